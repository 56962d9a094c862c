// Recurring plans at a provider (PROTOCOL.md §3.2): at the period boundary
// the plan renews through the same charge path: the account's own limit here,
// the principal's limits at the orchestrator. A renewal that does not fit is
// not forced through: the resource is suspended and the human is told. It is
// tried again, less and less often, for a grace period: a human who raises the
// limit (only a human can) gets the resource back, for a whole period from then.
import { decodeJwt } from 'jose';
import type { RecurringBilling } from '../../workers/lib/schemas/catalog';
import { BACKEND_RENEWALS } from './backend-outbox';
import { iso, type LedgerTx } from './context';
import { DAY_MS } from '../../workers/lib/time';
import { getResource, localHoldOf, owe, type Resource, type Saga } from './sagas';
import { billingPeriod, captureHold, checkLimits, getHold, insertHold, ownLimit, refundHold, voidHold, type Decline } from './spend';

export const RENEWAL_HOLD_TTL_MS = 15 * 60_000;
/**
 * When the orchestrator cannot be reached, try again in an hour (an active resource stays active meanwhile); and the
 * shortest wait between tries of a suspended one.
 */
export const RENEWAL_RETRY_MS = 60 * 60_000;
/** A suspended resource's renewal is tried again for this long after it was suspended, then no more. */
const RENEWAL_GRACE_MS = 30 * DAY_MS;
/** Between tries: as long as it has been suspended, an hour at least and a day at most (1 h, 2 h, 4 h, … then daily). */
const retryAfter = (suspendedFor: number) => Math.min(DAY_MS, Math.max(RENEWAL_RETRY_MS, suspendedFor));
/**
 * Why a renewal failed that a later try can get past: a limit a human raises (or a new month resets), the hour a
 * velocity limit counts, a renewal voided before its capture reached the orchestrator. A resource suspended for one of
 * these is tried again; others (a mandate revoked or expired, an agent revoked) no try will change.
 */
const RETRIED = new Set(['spend_limit_exceeded', 'velocity_limited', 'charge_voided']);

/**
 * Why a resource is suspended, for its agent to tell the human: the renewal's refusal (`code`), whose check refused it
 * (this account's own limits, or the principal's mandate and limits at the orchestrator), and where a human can lift
 * it, when a limit did.
 */
export type Suspension = { code: string; by: 'provider' | 'orchestrator'; step_up_url: string | null };

/** The next boundary of a monthly or yearly plan, from `from`, in UTC calendar terms. */
export function nextRenewal(from: number, billing: RecurringBilling): number {
  const d = new Date(from);
  return billing === 'month'
    ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds())
    : Date.UTC(d.getUTCFullYear() + 1, d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds());
}

/** The boundary before `renewsAt`: where the current period began, in the same calendar terms. */
export function previousRenewal(renewsAt: number, billing: RecurringBilling): number {
  const d = new Date(renewsAt);
  return billing === 'month'
    ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds())
    : Date.UTC(d.getUTCFullYear() - 1, d.getUTCMonth(), d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds());
}

/** How a resource is billed: a recurring plan with its first boundary, the end of the period its receipt states. */
export type Billed = { billing: 'one_time'; renews_at: null } | { billing: RecurringBilling; renews_at: number };

export function setBilling(tx: LedgerTx, resourceId: string, billed: Billed) {
  if (billed.renews_at === null) {
    tx.sql.exec(`UPDATE resources SET billing = 'one_time', renews_at = NULL WHERE id = ?`, resourceId);
    return;
  }
  tx.sql.exec('UPDATE resources SET billing = ?, renews_at = ? WHERE id = ?', billed.billing, billed.renews_at, resourceId);
  tx.schedule('renewals', billed.renews_at);
}

/** What renews: an active resource at its boundary, a suspended one at its next try. */
export const renewable = (resource: Pick<Resource, 'status'>) => resource.status === 'active' || resource.status === 'suspended';

/** The resources due to renew (ids: each is read when its turn comes). */
export function dueRenewals(sql: SqlStorage, now: number): string[] {
  return sql
    .exec<{ id: string }>(`SELECT id FROM resources WHERE status IN ('active', 'suspended') AND renews_at IS NOT NULL AND renews_at <= ? ORDER BY renews_at LIMIT 20`, now)
    .toArray()
    .map((r) => r.id);
}

/** The renewal is tried again at `at`, the resource staying as it is meanwhile; a suspended one, within its grace period only. */
function renewAgainAt(tx: LedgerTx, resourceId: string, at: number) {
  const resource = getResource(tx.sql, resourceId);
  if (!resource || !renewable(resource)) return;
  if (resource.status === 'suspended' && at - (resource.suspended_at ?? tx.now) > RENEWAL_GRACE_MS) {
    tx.sql.exec('UPDATE resources SET renews_at = NULL WHERE id = ?', resourceId);
    tx.audit({ actor: { type: 'system', id: 'renewal' }, action: 'resource.renew', mandate_id: resource.mandate_id, target: resourceId, outcome: 'refused', reason: 'grace_period_ended' });
    return;
  }
  tx.sql.exec('UPDATE resources SET renews_at = ? WHERE id = ?', at, resourceId);
  tx.schedule('renewals', at);
}

export function nextRenewalDue(sql: SqlStorage): number | null {
  return sql.exec<{ due: number | null }>(`SELECT MIN(renews_at) AS due FROM resources WHERE status IN ('active', 'suspended') AND renews_at IS NOT NULL`).one().due;
}

/** A plan change in flight is waited for (renewing the old plan under it would price the new period wrongly), and so is a capture still owed. */
export const RENEWAL_WAIT_MS = 60_000;

/**
 * Reserves the renewal's price against the account's own limit, or suspends the resource (`suspended`: just now);
 * `limitsUrl` is where the account's human raises that limit.
 */
export function reserveRenewal(
  tx: LedgerTx,
  resourceId: string,
  holdId: string,
  price: { amount: number; currency: string },
  limitsUrl: string,
): { ok: true } | (Decline & { suspended?: boolean }) {
  const resource = getResource(tx.sql, resourceId);
  if (!resource || !renewable(resource)) return { ok: false, code: 'not_found', detail: 'no active or suspended resource' };
  const wait = (code: string, detail: string) => {
    renewAgainAt(tx, resourceId, tx.now + RENEWAL_WAIT_MS);
    return { ok: false as const, code, detail };
  };
  if (tx.sql.exec(`SELECT 1 FROM sagas WHERE resource_id = ? AND kind = 'update' AND state IN ('reserved', 'authorized', 'recovering')`, resourceId).toArray().length > 0) {
    return wait('plan_change_in_progress', 'a plan change of this resource is in flight');
  }
  // The orchestrator renews only a captured charge: while the capture of the resource's latest charge is still owed
  // to it (a plan change completed just before the boundary, with the orchestrator out of reach since), asking
  // would be refused, which suspends.
  if (resource.charge_id !== null && tx.sql.exec(`SELECT 1 FROM charge_outbox WHERE charge_id = ? AND action = 'capture'`, resource.charge_id).toArray().length > 0) {
    return wait('capture_owed', 'the capture of the charge it renews is still owed');
  }
  const over = checkLimits(tx.sql, billingPeriod(tx.now), price, [{ scope: 'principal', limit: ownLimit(tx.sql) }]);
  if (over) return { ...over, suspended: lapse(tx, resource, { code: over.code, by: 'provider', step_up_url: limitsUrl }) };
  insertHold(tx, { id: holdId, mandate_id: resource.mandate_id, service: resource.service, plan: resource.plan, agent_id: resource.agent_id, amount: price, resource_ref: resourceId, ttl_ms: RENEWAL_HOLD_TTL_MS, scopes: ['principal', `service:${resource.service}`], kind: 'renewal' });
  tx.audit({ actor: { type: 'system', id: 'renewal' }, action: 'charge.reserve', mandate_id: resource.mandate_id, target: resourceId, outcome: 'succeeded', amount: price, related: [holdId, 'renewal'] });
  return { ok: true };
}

/**
 * The orchestrator authorized the renewal: capture here with the receipt (which states the period paid for, ending at
 * `renewsAt`), owe the capture there, move the boundary on to that end. A suspended resource is active again.
 */
export function completeRenewal(tx: LedgerTx, resourceId: string, holdId: string, { chargeId, receipt, renewsAt }: { chargeId: string; receipt: string; renewsAt: number }, orchestrator: string) {
  const resource = getResource(tx.sql, resourceId)!;
  tx.sql.exec('UPDATE holds SET remote_charge_id = ? WHERE id = ?', chargeId, holdId);
  if (!renewable(resource)) {
    // Deleted while the orchestrator was asked: there is nothing to renew, so
    // the authorization is given back on both sides rather than charging for a period not served.
    voidHold(tx, holdId, { type: 'system', id: 'renewal' }, `renewal_of_${resource.status}`);
    oweCharge(tx, resourceId, holdId, 'void', chargeId, orchestrator);
    tx.audit({ actor: { type: 'system', id: 'renewal' }, action: 'resource.renew', mandate_id: resource.mandate_id, target: resourceId, outcome: 'refused', reason: `resource_${resource.status}`, related: [chargeId] });
    return;
  }
  captureHold(tx, holdId, { type: 'system', id: 'renewal' }, receipt);
  tx.sql.exec(
    `UPDATE resources SET status = 'active', suspended_at = NULL, suspension = NULL, renews_at = ?, charge_id = ?, hold_id = ?, updated = ? WHERE id = ?`,
    renewsAt,
    chargeId,
    holdId,
    iso(tx.now),
    resourceId,
  );
  if (resource.status === 'suspended') {
    tx.audit({ actor: { type: 'system', id: 'renewal' }, action: 'resource.resume', mandate_id: resource.mandate_id, target: resourceId, outcome: 'succeeded', related: [chargeId] });
  }
  oweCharge(tx, resourceId, holdId, 'capture', chargeId, orchestrator);
  tx.schedule('renewals', renewsAt);
  // The backend is owed the renewal too (the pass tells it at once; the alarm is the safety net).
  tx.sql.exec('INSERT OR REPLACE INTO backend_renewals (resource_id, attempts, next_attempt_at) VALUES (?, 0, ?)', resourceId, tx.now + BACKEND_RENEWALS.firstRetryMs);
  tx.schedule(BACKEND_RENEWALS.task, tx.now + BACKEND_RENEWALS.firstRetryMs);
  tx.audit({ actor: { type: 'system', id: 'renewal' }, action: 'resource.renew', mandate_id: resource.mandate_id, target: resourceId, outcome: 'succeeded', related: [chargeId], amount: null });
}

/** What the backend reports after a paid renewal (a domain's new expiry); the renewal itself is already audited. */
export function recordRenewedFields(tx: LedgerTx, resourceId: string, fields: Record<string, unknown> | null) {
  if (fields) tx.sql.exec(`UPDATE resources SET fields = ?, updated = ? WHERE id = ? AND status = 'active'`, JSON.stringify(fields), iso(tx.now), resourceId);
}

/**
 * The idempotency key of a renewal's charge at the orchestrator: one per try (each try has its own hold), and the
 * outbox's name for the renewal's calls.
 */
export const renewalKey = (resourceId: string, holdId: string) => `renewal:${resourceId}:${holdId}`;

/** A renewal's capture or void, owed to the orchestrator through the outbox. */
function oweCharge(tx: LedgerTx, resourceId: string, holdId: string, action: 'capture' | 'void', chargeId: string, orchestrator: string) {
  tx.sql.exec(
    'INSERT INTO charge_outbox (saga_id, action, charge_id, orchestrator, attempts, next_attempt_at) VALUES (?, ?, ?, ?, 0, ?)',
    renewalKey(resourceId, holdId),
    action,
    chargeId,
    orchestrator,
    tx.now,
  );
  tx.schedule('charge_outbox', tx.now);
}

/**
 * The orchestrator declined (`code`, and where a human lifts it if it says): release the local hold and suspend rather
 * than overspend; true when suspended just now.
 */
export function declineRenewal(tx: LedgerTx, resourceId: string, holdId: string, code: string, stepUpUrl: string | null): boolean {
  voidHold(tx, holdId, { type: 'system', id: 'renewal' }, `renewal_declined:${code}`);
  const resource = getResource(tx.sql, resourceId);
  // Deleted while the orchestrator was asked: it stays deleted.
  return resource !== null && renewable(resource) && lapse(tx, resource, { code, by: 'orchestrator', step_up_url: stepUpUrl });
}

/**
 * The orchestrator could not be reached, or failed: release the hold and try again later. It may have
 * authorized all the same: that charge is found by the renewal's key and voided (the next try has another key).
 */
export function postponeRenewal(tx: LedgerTx, resourceId: string, holdId: string, payer: Pick<Saga, 'orchestrator' | 'principal_sub'>) {
  voidHold(tx, holdId, { type: 'system', id: 'renewal' }, 'renewal_postponed');
  const key = renewalKey(resourceId, holdId);
  owe(tx, { id: key, charge_id: null, orchestrator: payer.orchestrator }, 'void_by_key', { principal_sub: payer.principal_sub, idempotency_key: key });
  renewAgainAt(tx, resourceId, tx.now + RENEWAL_RETRY_MS);
}

/**
 * The orchestrator holds the period not over yet (its clock behind ours, or the period measured from when it made
 * the charge, later than our boundary): release the hold and renew when it says, a minute from now at the soonest.
 * It held nothing, so nothing is owed to it.
 */
export function deferRenewal(tx: LedgerTx, resourceId: string, holdId: string, notBefore: number) {
  voidHold(tx, holdId, { type: 'system', id: 'renewal' }, 'renewal_not_due');
  renewAgainAt(tx, resourceId, Math.max(notBefore, tx.now + RENEWAL_WAIT_MS));
}

/**
 * A renewal refused (`why`): an active resource is suspended; either way its renewal is tried again later if a
 * try can get past the refusal, until the grace period since it was suspended has run out. The resource says why,
 * as the latest try was refused. True when it was suspended just now (its backend is to be told).
 */
function lapse(tx: LedgerTx, resource: Resource, why: Suspension): boolean {
  const reason = why.code;
  const suspendedAt = resource.status === 'suspended' ? (resource.suspended_at ?? tx.now) : tx.now;
  if (resource.status === 'active') {
    tx.audit({ actor: { type: 'system', id: 'renewal' }, action: 'resource.suspend', mandate_id: resource.mandate_id, target: resource.id, outcome: 'succeeded', reason });
  }
  tx.sql.exec(`UPDATE resources SET status = 'suspended', suspended_at = ?, suspension = ?, updated = ? WHERE id = ?`, suspendedAt, JSON.stringify(why), iso(tx.now), resource.id);
  // The suspension's own event says a refusal no try will change: no more tries, nothing else to say.
  if (RETRIED.has(reason)) renewAgainAt(tx, resource.id, tx.now + retryAfter(tx.now - suspendedAt));
  else tx.sql.exec('UPDATE resources SET renews_at = NULL WHERE id = ?', resource.id);
  return resource.status === 'active';
}

/**
 * A renewal the orchestrator voided before its capture reached it (its hold there ran out while it could not be
 * reached): the period is not paid. The local hold is given back, the resource is on the charge the renewal renewed
 * again, and it is suspended, its renewal tried again like a declined one. True when it was suspended just now.
 */
export function renewalVoided(tx: LedgerTx, resourceId: string, holdId: string): boolean {
  refundHold(tx, holdId, { type: 'system', id: 'renewal' }, 'charge_voided_at_orchestrator');
  const resource = getResource(tx.sql, resourceId);
  if (!resource || !renewable(resource)) return false;
  const receipt = getHold(tx.sql, holdId)?.receipt;
  const renewed = receipt ? decodeJwt(receipt).renewal_of : undefined;
  if (resource.hold_id === holdId && typeof renewed === 'string') {
    tx.sql.exec('UPDATE resources SET charge_id = ?, hold_id = ? WHERE id = ?', renewed, localHoldOf(tx.sql, renewed), resourceId);
  }
  return lapse(tx, resource, { code: 'charge_voided', by: 'orchestrator', step_up_url: null });
}
