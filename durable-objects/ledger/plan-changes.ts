// A recurring resource's plan change (PROTOCOL.md §3.1 "Also": PATCH
// /v1/resources/{id}) as a saga of kind `update`, on the same charge path as a
// creation: reserve here, authorize at the orchestrator, switch the plan at the
// backend, capture both, or void both. The price difference is charged pro
// rata over what remains of the period. A downgrade is a $0 charge (so the
// orchestrator holds the agent's signed change) plus a credit against the
// period's charge, given only once that $0 charge is captured. A failed change
// never fails the resource: it stays on, or goes back to, its old plan.
import type { Money } from '../../workers/lib/schemas/money';
import { iso, refuse, type LedgerTx, type Outcome } from './context';
import { previousRenewal } from './renewals';
import { auditCompletion, claimRequestKey, getResource, insertSaga, getSaga, owe, PROVIDER_HOLD_TTL_MS, SAGA_DEADLINE_MS, type Resource, type Saga, type SagaParties } from './sagas';
import { billingPeriod, captureHold, checkLimits, getHold, insertHold, ownLimit, refundHold, refundPart, type Decline } from './spend';

/** What remains of the current period, (renews_at − now) / (renews_at − previous boundary), within [0, 1]. */
export function remainingFraction(renewsAt: number, billing: 'month' | 'year', now: number): number {
  const length = renewsAt - previousRenewal(renewsAt, billing);
  return length <= 0 ? 0 : Math.min(1, Math.max(0, (renewsAt - now) / length));
}

/** The difference in minor units for the rest of the period: > 0 is charged, < 0 credited. */
export function proRata(from: Money, to: Money, fraction: number): number {
  return Math.round((to.amount - from.amount) * fraction);
}

/** The local hold of the resource's current period: named on the resource, or (older rows) its creation's. */
export function periodHoldOf(sql: SqlStorage, resource: Resource): string | null {
  if (resource.hold_id) return resource.hold_id;
  if (!resource.charge_id) return null;
  return sql.exec<{ hold_id: string }>('SELECT hold_id FROM sagas WHERE charge_id = ?', resource.charge_id).toArray()[0]?.hold_id ?? null;
}

/** `mandate_id` is the one the agent acts under now (its token's), which need not be the one it created the resource under. */
export type UpdateStart = SagaParties & {
  /** The plan the caller checked the change against; another plan by now is a conflict. */
  from: { plan: string; price: Money };
  to: { plan: string; price: Money };
  request_key: string;
};

/** `renews_at`: the boundary the difference was priced against, where the period the change pays for ends. */
export type UpdateBegun = { ok: true; saga: Saga; event_id: string; charge: Money; credit: Money; renews_at: number };

/**
 * Step 2 for a plan change, in one transaction: the resource is the agent's,
 * active, on the plan the caller checked and not mid-change; the pro-rata
 * difference is computed against its renews_at now, and the charge (never
 * below 0) reserved against the account's own limit.
 */
export function beginUpdate(tx: LedgerTx, start: UpdateStart): UpdateBegun | (Decline & { existing?: Saga }) {
  const existing = claimRequestKey(tx, start.request_key);
  if (existing) return { ok: false, code: 'saga_exists', detail: 'This paid call already has a saga.', existing };
  const resource = getResource(tx.sql, start.resource_id);
  if (!resource || resource.status === 'failed' || resource.status === 'deleted' || resource.agent_id !== start.agent_id) return refuse('not_found', 'No such resource.');
  if (resource.status !== 'active') return refuse('conflict', `The resource is ${resource.status}.`);
  if (resource.plan !== start.from.plan) return refuse('conflict', `The resource is now on plan ${resource.plan}.`);
  const open = tx.sql.exec(`SELECT 1 FROM sagas WHERE resource_id = ? AND state IN ('reserved', 'authorized', 'recovering')`, resource.id).toArray().length > 0;
  if (open) return refuse('conflict', 'A plan change of this resource is in progress.');
  if (resource.renews_at === null || (resource.billing !== 'month' && resource.billing !== 'year')) return refuse('invalid_parameters', 'Only a recurring plan changes pro rata.');
  if (resource.renews_at <= tx.now) return refuse('conflict', 'The resource is due to renew; try again in a minute.');

  const delta = proRata(start.from.price, start.to.price, remainingFraction(resource.renews_at, resource.billing, tx.now));
  const charge = { amount: Math.max(delta, 0), currency: start.to.price.currency };
  const credit = { amount: Math.max(-delta, 0), currency: start.to.price.currency };
  const actor = { type: 'agent' as const, id: start.agent_id };
  const change = `${resource.service}/${resource.plan}->${start.to.plan}`;
  const over = checkLimits(tx.sql, billingPeriod(tx.now), charge, [{ scope: 'principal', limit: ownLimit(tx.sql) }]);
  if (over) {
    tx.audit({ actor, action: 'charge.reserve', mandate_id: start.mandate_id, target: resource.id, outcome: 'refused', reason: over.code, amount: charge, related: [change] });
    return { ...over, detail: `This would exceed the account's monthly limit at this provider.` };
  }
  insertHold(tx, {
    id: start.hold_id,
    mandate_id: start.mandate_id,
    service: resource.service,
    plan: start.to.plan,
    agent_id: start.agent_id,
    amount: charge,
    resource_ref: resource.id,
    ttl_ms: PROVIDER_HOLD_TTL_MS,
    scopes: ['principal', `service:${resource.service}`],
  });
  const deadline = insertSaga(tx, {
    id: start.saga_id,
    kind: 'update',
    agent_id: start.agent_id,
    mandate_id: start.mandate_id,
    orchestrator: start.orchestrator,
    principal_sub: start.principal_sub,
    token_jti: start.token_jti,
    service: resource.service,
    plan: start.to.plan,
    amount: charge.amount,
    currency: charge.currency,
    hold_id: start.hold_id,
    resource_id: resource.id,
    request: start.request,
    request_key: start.request_key,
    previous_plan: resource.plan,
    previous_charge_id: resource.charge_id,
    previous_hold_id: periodHoldOf(tx.sql, resource),
    credit: credit.amount,
    deadline_ms: SAGA_DEADLINE_MS,
  });
  tx.schedule('saga_recovery', deadline);
  const event = tx.audit({ actor, action: 'charge.reserve', mandate_id: start.mandate_id, target: resource.id, outcome: 'succeeded', amount: charge, related: [start.hold_id, change] });
  return { ok: true, saga: getSaga(tx.sql, start.saga_id)!, event_id: event.id, charge, credit, renews_at: resource.renews_at };
}

/** The credit a completed change gives: what it owes, within what is left of the previous charge. */
function creditable(sql: SqlStorage, saga: Saga): number {
  if (saga.credit <= 0 || !saga.previous_hold_id || !saga.previous_charge_id) return 0;
  const hold = getHold(sql, saga.previous_hold_id);
  return hold && hold.status === 'captured' ? Math.min(saga.credit, hold.amount - hold.refunded) : 0;
}

/**
 * Steps 4–5: the backend switched; the resource is on the new plan, whose
 * charge is now the period's (later renewals name it), captured here and owed
 * to the orchestrator. Null when the saga or the resource moved meanwhile.
 */
export function completeUpdate(tx: LedgerTx, sagaId: string, result: { fields: string; receipt: string }) {
  const saga = getSaga(tx.sql, sagaId);
  if (!saga || saga.kind !== 'update' || saga.state !== 'authorized' || !saga.charge_id) return null;
  const resource = getResource(tx.sql, saga.resource_id);
  if (!resource || resource.status !== 'active' || resource.plan !== saga.previous_plan) return null;
  if (!captureHold(tx, saga.hold_id, { type: 'system', id: 'saga' }, result.receipt).ok) return null;
  tx.sql.exec('UPDATE resources SET plan = ?, fields = ?, charge_id = ?, hold_id = ?, updated = ? WHERE id = ?', saga.plan, result.fields, saga.charge_id, saga.hold_id, iso(tx.now), resource.id);
  tx.sql.exec(`UPDATE sagas SET state = 'completed', updated = ? WHERE id = ?`, tx.now, sagaId);
  owe(tx, saga, 'capture');
  const credit = creditable(tx.sql, saga);
  const event = auditCompletion(tx, saga, 'resource.update', [`${saga.service}/${saga.previous_plan}->${saga.plan}`, ...(credit > 0 ? [`credit:${credit}`] : [])]);
  return { saga: getSaga(tx.sql, sagaId)!, event, resource: getResource(tx.sql, resource.id)!, credit: { amount: credit, currency: saga.currency } };
}

/**
 * The change's charge is captured at the orchestrator: now the downgrade's
 * credit is given, here at once and there through the outbox, never twice
 * (its key is the saga's). Before that capture there is nothing to credit:
 * a refused capture puts the old plan back.
 */
export function grantCredit(tx: LedgerTx, saga: Saga) {
  const amount = saga.kind === 'update' && saga.state === 'completed' ? creditable(tx.sql, saga) : 0;
  if (amount <= 0) return;
  const key = `credit:${saga.id}`;
  const refund = { amount, currency: saga.currency, reason: 'plan_change_credit', key };
  const local = refundPart(tx, saga.previous_hold_id!, refund, { type: 'system', id: 'plan-change' });
  if (!local.ok || local.replayed) return;
  owe(tx, saga, 'refund', { amount, currency: saga.currency, reason: refund.reason, idempotency_key: key }, saga.previous_charge_id);
}

/**
 * The orchestrator refused to capture the change's charge (voided there): the
 * local capture is refunded and, when the resource is still as the change left
 * it, it goes back to its previous plan with the fields the backend gave back.
 */
export function revertUpdate(tx: LedgerTx, sagaId: string, fields: string | null) {
  const saga = getSaga(tx.sql, sagaId);
  if (!saga || saga.kind !== 'update' || saga.state !== 'completed') return;
  refundHold(tx, saga.hold_id, { type: 'system', id: 'saga' }, 'charge_voided_at_orchestrator');
  const resource = getResource(tx.sql, saga.resource_id);
  if (fields !== null && resource && stillChangedBy(resource, saga)) {
    tx.sql.exec('UPDATE resources SET plan = ?, fields = ?, charge_id = ?, hold_id = ?, updated = ? WHERE id = ?', saga.previous_plan, fields, saga.previous_charge_id, saga.previous_hold_id, iso(tx.now), resource.id);
  }
  tx.sql.exec(`UPDATE sagas SET state = 'voided', error = 'charge_voided_at_orchestrator', updated = ? WHERE id = ?`, tx.now, sagaId);
  tx.audit({
    actor: { type: 'system', id: 'saga' },
    action: 'resource.update',
    mandate_id: saga.mandate_id,
    target: saga.resource_id,
    outcome: 'failed',
    reason: 'charge_voided',
    amount: { amount: saga.amount, currency: saga.currency },
    related: [saga.charge_id!, `${saga.service}/${saga.plan}->${saga.previous_plan}`],
  });
}

/** The resource is active and still as `saga` left it: the one to put back. */
export function stillChangedBy(resource: Resource, saga: Saga): boolean {
  return resource.status === 'active' && resource.plan === saga.plan && resource.charge_id === saga.charge_id;
}

/** The resource and plan a retried PATCH finds its first outcome in. */
export function updateOutcome(sql: SqlStorage, saga: Saga): Outcome<{ resource: Resource; credit: Money; receipt: string }> {
  const resource = getResource(sql, saga.resource_id);
  if (saga.state !== 'completed' || !resource || !saga.audit_event_id) return refuse('in_progress', 'This paid call is still being processed.');
  const credit = sql.exec<{ amount: number }>('SELECT amount FROM refunds WHERE charge_id = ? AND key = ?', saga.previous_hold_id, `credit:${saga.id}`).toArray()[0]?.amount ?? creditable(sql, saga);
  return { ok: true, resource, credit: { amount: credit, currency: saga.currency }, receipt: getHold(sql, saga.hold_id)?.receipt ?? '' };
}
