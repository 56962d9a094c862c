// The provisioning saga at a provider (DESIGN.md "Money and order"): reserve
// in the account's own ledger, authorize at the orchestrator, provision,
// capture both, or void both. Each transition is one transaction with its
// audit event; the calls owed to the orchestrator go through an outbox the
// alarm drains, and a saga stuck past its deadline is finished or undone by
// the alarm, so a crash at any step ends with a resource and a captured
// charge, or no resource and a voided charge.
import type { Money } from '../../workers/lib/schemas/money';
import { iso, type LedgerTx } from './context';
import { TTL_MS as IDEMPOTENCY_TTL_MS } from './idempotency';
import { type Billed, setBilling } from './renewals';
import { authorizedSince, billingPeriod, captureHold, checkLimits, insertHold, ownLimit, voidHold, type Decline } from './spend';

/** A saga not finished within this time is recovered by the alarm. */
export const SAGA_DEADLINE_MS = 60_000;
/** Async provisioning may take longer. */
export const ASYNC_SAGA_DEADLINE_MS = 5 * 60_000;
/** The local hold outlives the orchestrator's (10 min): recovery asks before it lets go. */
export const PROVIDER_HOLD_TTL_MS = 15 * 60_000;

/** `recovering`: past its deadline, taken out of the request's hands while recovery undoes the backend's work. */
export type SagaState = 'reserved' | 'authorized' | 'recovering' | 'completed' | 'voided';
export type ResourceStatus = 'provisioning' | 'active' | 'failed' | 'deleted' | 'suspended';

export type Saga = {
  id: string;
  /** `create`: POST /v1/resources. `update`: PATCH /v1/resources/{id}, a plan change (ledger/plan-changes.ts). */
  kind: 'create' | 'update';
  state: SagaState;
  agent_id: string;
  mandate_id: string;
  orchestrator: string;
  principal_sub: string;
  token_jti: string;
  service: string;
  plan: string;
  amount: number;
  currency: string;
  hold_id: string;
  charge_id: string | null;
  resource_id: string;
  request: string;
  charge_decision: string | null;
  error: string | null;
  credentials: string | null;
  created: number;
  updated: number;
  deadline: number;
  request_key: string | null;
  audit_event_id: string | null;
  /** Update sagas: what the change replaced, put back if the orchestrator refuses the capture. */
  previous_plan: string | null;
  previous_charge_id: string | null;
  previous_hold_id: string | null;
  /** Update sagas: the pro-rata credit owed against the previous charge once this one is captured. */
  credit: number;
};

export type Resource = {
  id: string;
  service: string;
  plan: string;
  status: ResourceStatus;
  agent_id: string;
  mandate_id: string;
  parameters: string;
  fields: string | null;
  /** The orchestrator's charge of the current period (creation, renewal or plan change)… */
  charge_id: string | null;
  /** …and the local hold that mirrors it. */
  hold_id: string | null;
  created: string;
  updated: string;
  billing: string | null;
  /** The next boundary; for a suspended resource, the next try of its renewal (null: no more tries). */
  renews_at: number | null;
  /** When a declined renewal suspended it (null while active). */
  suspended_at: number | null;
  /** JSON Suspension: why the renewal was refused, the latest try's reason (null while active). */
  suspension: string | null;
};

export function getSaga(sql: SqlStorage, id: string): Saga | null {
  return sql.exec<Saga>('SELECT * FROM sagas WHERE id = ?', id).toArray()[0] ?? null;
}

/**
 * The local hold that mirrors an orchestrator charge: a provisioning's or plan change's (named in its saga) or a
 * renewal's (named on the hold). A charge id is in one of the two only.
 */
export function localHoldOf(sql: SqlStorage, chargeId: string): string | null {
  return sql.exec<{ id: string }>('SELECT hold_id AS id FROM sagas WHERE charge_id = ?1 UNION ALL SELECT id FROM holds WHERE remote_charge_id = ?1 LIMIT 1', chargeId).toArray()[0]?.id ?? null;
}

export function getResource(sql: SqlStorage, id: string): Resource | null {
  return sql.exec<Resource>('SELECT * FROM resources WHERE id = ?', id).toArray()[0] ?? null;
}

export function listResources(sql: SqlStorage): Resource[] {
  return sql.exec<Resource>(`SELECT * FROM resources WHERE status != 'failed' ORDER BY rowid DESC`).toArray();
}

/** Who pays and on whose word: what every saga, a creation or a plan change, starts from. */
export type SagaParties = Pick<Saga, 'hold_id' | 'resource_id' | 'agent_id' | 'mandate_id' | 'orchestrator' | 'principal_sub' | 'token_jti' | 'request'> & { saga_id: string };

export type SagaStart = SagaParties &
  Pick<Saga, 'service' | 'plan'> & {
    price: Money;
    parameters: string;
    async: boolean;
    velocity: { count: number; window_ms: number } | null;
    /** `<account>:<agent> <Idempotency-Key>`: at most one live saga per paid call. */
    request_key?: string | null;
  };

/** A saga's row as a paid call starts it, `reserved`, with what a plan change adds; returns its deadline, which recovery is scheduled for. */
export function insertSaga(
  tx: LedgerTx,
  row: Pick<Saga, 'id' | 'kind' | 'agent_id' | 'mandate_id' | 'orchestrator' | 'principal_sub' | 'token_jti' | 'service' | 'plan' | 'amount' | 'currency' | 'hold_id' | 'resource_id' | 'request' | 'request_key'> &
    Partial<Pick<Saga, 'previous_plan' | 'previous_charge_id' | 'previous_hold_id' | 'credit'>> & { deadline_ms: number },
): number {
  const { deadline_ms, ...columns } = row;
  const values = { ...columns, state: 'reserved', created: tx.now, updated: tx.now, deadline: tx.now + deadline_ms };
  const names = Object.keys(values);
  tx.sql.exec(`INSERT INTO sagas (${names.join(', ')}) VALUES (${names.map(() => '?').join(', ')})`, ...Object.values(values));
  return values.deadline;
}

/**
 * The saga a paid call's Idempotency-Key started within the key's 24 hours: a
 * retry finds it instead of paying twice. An Idempotency-Key is remembered for
 * 24 hours (PROTOCOL.md Conventions), so an older saga holding the key is
 * a past call, and is not answered for a new one.
 */
export function sagaForRequestKey(sql: SqlStorage, requestKey: string, now: number): Saga | null {
  const saga = sql.exec<Saga>(`SELECT * FROM sagas WHERE request_key = ? AND state != 'voided'`, requestKey).toArray()[0];
  return saga && saga.created > now - IDEMPOTENCY_TTL_MS ? saga : null;
}

/** The saga already holding this key, or none: then the key is taken for a new saga (a past one lets go of it). */
export function claimRequestKey(tx: LedgerTx, requestKey: string): Saga | null {
  const existing = sagaForRequestKey(tx.sql, requestKey, tx.now);
  if (!existing) tx.sql.exec(`UPDATE sagas SET request_key = NULL WHERE request_key = ?`, requestKey);
  return existing;
}

/**
 * Step 2 (§3.1): velocity from the catalog, then the account's own monthly
 * limit; on success a pending hold, the saga and the resource in `provisioning`.
 */
export function beginSaga(tx: LedgerTx, start: SagaStart): { ok: true; saga: Saga; event_id: string } | (Decline & { existing?: Saga }) {
  const existing = start.request_key ? claimRequestKey(tx, start.request_key) : null;
  if (existing) return { ok: false, code: 'saga_exists', detail: 'This paid call already has a saga.', existing };
  const actor = { type: 'agent' as const, id: start.agent_id };
  const refuse = (d: Omit<Decline, 'ok'>): Decline => {
    tx.audit({ actor, action: 'charge.reserve', mandate_id: start.mandate_id, target: start.resource_id, outcome: 'refused', reason: d.code, amount: start.price, related: [`${start.service}/${start.plan}`] });
    return { ok: false, ...d };
  };
  if (start.velocity && authorizedSince(tx.sql, tx.now - start.velocity.window_ms, start.service) >= start.velocity.count) {
    return refuse({ code: 'velocity_limited', detail: `At most ${start.velocity.count} ${start.service} per window for this account.` });
  }
  const period = billingPeriod(tx.now);
  const limit = ownLimit(tx.sql);
  const over = checkLimits(tx.sql, period, start.price, [{ scope: 'principal', limit }]);
  if (over) return refuse({ ...over, detail: `This would exceed the account's monthly limit at this provider.` });
  insertHold(tx, {
    id: start.hold_id,
    mandate_id: start.mandate_id,
    service: start.service,
    plan: start.plan,
    agent_id: start.agent_id,
    amount: start.price,
    resource_ref: start.resource_id,
    ttl_ms: PROVIDER_HOLD_TTL_MS,
    scopes: ['principal', `service:${start.service}`],
  });
  const deadline = insertSaga(tx, {
    id: start.saga_id,
    kind: 'create',
    agent_id: start.agent_id,
    mandate_id: start.mandate_id,
    orchestrator: start.orchestrator,
    principal_sub: start.principal_sub,
    token_jti: start.token_jti,
    service: start.service,
    plan: start.plan,
    amount: start.price.amount,
    currency: start.price.currency,
    hold_id: start.hold_id,
    resource_id: start.resource_id,
    request: start.request,
    request_key: start.request_key ?? null,
    deadline_ms: start.async ? ASYNC_SAGA_DEADLINE_MS : SAGA_DEADLINE_MS,
  });
  tx.sql.exec(
    `INSERT INTO resources (id, service, plan, status, agent_id, mandate_id, parameters, created, updated) VALUES (?, ?, ?, 'provisioning', ?, ?, ?, ?, ?)`,
    start.resource_id,
    start.service,
    start.plan,
    start.agent_id,
    start.mandate_id,
    start.parameters,
    iso(tx.now),
    iso(tx.now),
  );
  tx.schedule('saga_recovery', deadline);
  const event = tx.audit({ actor, action: 'charge.reserve', mandate_id: start.mandate_id, target: start.resource_id, outcome: 'succeeded', amount: start.price, related: [start.hold_id] });
  return { ok: true, saga: getSaga(tx.sql, start.saga_id)!, event_id: event.id };
}

/** The orchestrator's answer to a saga's charge: its id and the decision (JSON), as the receipt and the trail name them. */
export type Authorization = { charge_id: string; decision: string };

/**
 * Step 3 done: the orchestrator holds the charge too. A synchronous creation
 * records it with its completion, or with its void (one write fewer on the
 * paid path): until then the saga stays `reserved`, and recovery treats a
 * `reserved` creation as possibly provisioned. An authorization that arrives
 * after recovery took the saga names its charge, so that its void goes by id.
 */
export function recordAuthorization(tx: LedgerTx, sagaId: string, chargeId: string, decision: string): Saga | null {
  const before = getSaga(tx.sql, sagaId);
  if (!before) return null;
  if (before.state === 'reserved') {
    tx.sql.exec(`UPDATE sagas SET state = 'authorized', charge_id = ?, charge_decision = ?, updated = ? WHERE id = ?`, chargeId, decision, tx.now, sagaId);
    // A plan change names its charge on the resource only once it completes: until then the old one is the period's.
    if (before.kind === 'create') tx.sql.exec(`UPDATE resources SET charge_id = ? WHERE id = ?`, chargeId, before.resource_id);
  } else if (!before.charge_id && (before.state === 'voided' || before.state === 'recovering')) {
    tx.sql.exec('UPDATE sagas SET charge_id = ?, charge_decision = ? WHERE id = ?', chargeId, decision, sagaId);
    if (before.state === 'voided') {
      // Recovery voided the saga while the orchestrator was deciding: the charge it authorized is owed a void,
      // by its id now that it is known, in place of the lookup by key that recovery owed.
      tx.sql.exec(`DELETE FROM charge_outbox WHERE saga_id = ? AND action = 'void_by_key'`, sagaId);
      owe(tx, getSaga(tx.sql, sagaId)!, 'void');
    }
  }
  return getSaga(tx.sql, sagaId);
}

/**
 * Steps 4–5: the resource is active and both charges are captured, the local
 * one now, the orchestrator's through the outbox (off the request's path).
 * Returns the audit event that the response names.
 */
export function completeSaga(
  tx: LedgerTx,
  sagaId: string,
  result: { fields: string; credentials: string | null; receipt: string | null; authorization?: Authorization } & Billed,
) {
  const saga = result.authorization ? recordAuthorization(tx, sagaId, result.authorization.charge_id, result.authorization.decision) : getSaga(tx.sql, sagaId);
  if (!saga || saga.state !== 'authorized' || !saga.charge_id) return null;
  // A local hold past its time is void: nothing is completed on it (the caller undoes the work, recovery voids the rest).
  if (!captureHold(tx, saga.hold_id, { type: 'system', id: 'saga' }, result.receipt ?? undefined).ok) return null;
  tx.sql.exec(`UPDATE resources SET status = 'active', fields = ?, hold_id = ?, updated = ? WHERE id = ?`, result.fields, saga.hold_id, iso(tx.now), saga.resource_id);
  tx.sql.exec(`UPDATE sagas SET state = 'completed', credentials = ?, updated = ? WHERE id = ?`, result.credentials, tx.now, sagaId);
  if (result.credentials) tx.schedule('unclaimed_credentials', tx.now + UNCLAIMED_CREDENTIALS_MS);
  setBilling(tx, saga.resource_id, result);
  owe(tx, saga, 'capture');
  const event = auditCompletion(tx, saga, 'resource.provision', [`${saga.service}/${saga.plan}`]);
  return { saga: getSaga(tx.sql, sagaId)!, event };
}

/**
 * The event a completed saga answers with, kept on the saga. §4: it names the
 * charge and the orchestrator's event for it, so the two trails join charge by charge.
 */
export function auditCompletion(tx: LedgerTx, saga: Saga, action: 'resource.provision' | 'resource.update', detail: string[]) {
  const decision = saga.charge_decision ? (JSON.parse(saga.charge_decision) as { audit_event_id?: string } | null) : null;
  const event = tx.audit({
    actor: { type: 'agent', id: saga.agent_id },
    action,
    mandate_id: saga.mandate_id,
    target: saga.resource_id,
    outcome: 'succeeded',
    amount: { amount: saga.amount, currency: saga.currency },
    related: [saga.charge_id!, ...detail, ...(decision?.audit_event_id ? [decision.audit_event_id] : [])],
  });
  tx.sql.exec('UPDATE sagas SET audit_event_id = ? WHERE id = ?', event.id, saga.id);
  return event;
}

/**
 * How long a charge whose authorization answer was lost is left before the
 * outbox looks it up by its key: past the life of the provider token that
 * asked (60 s, and the orchestrator's 5 s of clock tolerance), the request
 * can no longer be taken, so what the lookup finds is final.
 */
export const LOST_ANSWER_LOOKUP_DELAY_MS = 70_000;

/**
 * Any failure: nothing provisioned stays, nothing is charged. The orchestrator's hold is voided through the outbox:
 * by its id once the authorization is known (recorded, or given here by a request that had not recorded it); found by
 * the saga's key first when `answerLost` (the orchestrator may have authorized without its answer arriving: a timeout,
 * a 5xx, a crash while it was asked).
 * A failed plan change leaves its resource as it was, on its old plan: only a failed creation fails the resource.
 */
export function voidSaga(tx: LedgerTx, sagaId: string, reason: string, answerLost = false, authorization?: Authorization) {
  const saga = authorization ? recordAuthorization(tx, sagaId, authorization.charge_id, authorization.decision) : getSaga(tx.sql, sagaId);
  if (!saga || saga.state === 'completed' || saga.state === 'voided') return saga;
  const update = saga.kind === 'update';
  voidHold(tx, saga.hold_id, { type: 'system', id: 'saga' }, reason);
  if (!update) tx.sql.exec(`UPDATE resources SET status = 'failed', updated = ? WHERE id = ?`, iso(tx.now), saga.resource_id);
  tx.sql.exec(`UPDATE sagas SET state = 'voided', error = ?, updated = ? WHERE id = ?`, reason.slice(0, 500), tx.now, sagaId);
  if (saga.charge_id) owe(tx, saga, 'void');
  else if (answerLost) owe(tx, saga, 'void_by_key', { principal_sub: saga.principal_sub, idempotency_key: saga.id });
  tx.audit({
    actor: { type: 'agent', id: saga.agent_id },
    action: update ? 'resource.update' : 'resource.provision',
    mandate_id: saga.mandate_id,
    target: saga.resource_id,
    outcome: 'failed',
    reason: reason.slice(0, 200),
    amount: { amount: saga.amount, currency: saga.currency },
    related: [...(saga.charge_id ? [saga.charge_id] : []), ...(update ? [`${saga.service}/${saga.previous_plan}->${saga.plan}`] : [])],
  });
  return getSaga(tx.sql, sagaId);
}

/** A call owed to the orchestrator about `chargeId` (the saga's own unless named), delivered by the alarm. */
/**
 * Captures wait this long (§3.1 allows 5 s), so that a burst of paid calls
 * finishes before the alarm sends their captures together; a void or a refund
 * goes at once, since it gives money back.
 */
export const CAPTURE_DELAY_MS = 3000;

export function owe(tx: LedgerTx, saga: Pick<Saga, 'id' | 'charge_id' | 'orchestrator'>, action: OwedChargeCall['action'], body: object | null = null, chargeId: string | null = saga.charge_id) {
  const due = action === 'capture' ? tx.now + CAPTURE_DELAY_MS : action === 'void_by_key' ? tx.now + LOST_ANSWER_LOOKUP_DELAY_MS : tx.now;
  tx.sql.exec(
    'INSERT INTO charge_outbox (saga_id, action, charge_id, orchestrator, attempts, next_attempt_at, body) VALUES (?, ?, ?, ?, 0, ?, ?)',
    saga.id,
    action,
    chargeId ?? '',
    saga.orchestrator,
    due,
    body ? JSON.stringify(body) : null,
  );
  tx.schedule('charge_outbox', due);
}

/**
 * `body` is a refund's JSON body ({amount, currency, reason, idempotency_key}), or for `void_by_key` what finds the
 * charge ({principal_sub, idempotency_key}; `charge_id` is then empty); null for a capture or void.
 */
export type OwedChargeCall = { id: number; saga_id: string; action: 'capture' | 'void' | 'refund' | 'void_by_key'; charge_id: string; orchestrator: string; attempts: number; body: string | null };

export function dueChargeCalls(sql: SqlStorage, now: number): OwedChargeCall[] {
  return sql.exec<OwedChargeCall>('SELECT id, saga_id, action, charge_id, orchestrator, attempts, body FROM charge_outbox WHERE next_attempt_at <= ? ORDER BY id LIMIT 50', now).toArray();
}

export function pendingChargeCalls(sql: SqlStorage): OwedChargeCall[] {
  return sql.exec<OwedChargeCall>('SELECT id, saga_id, action, charge_id, orchestrator, attempts, body FROM charge_outbox ORDER BY id').toArray();
}

export function openSagasPastDeadline(sql: SqlStorage, now: number): Saga[] {
  return sql.exec<Saga>(`SELECT * FROM sagas WHERE state IN ('reserved', 'authorized', 'recovering') AND deadline <= ? ORDER BY deadline LIMIT 20`, now).toArray();
}

export function nextSagaDeadline(sql: SqlStorage): number | null {
  return sql.exec<{ due: number | null }>(`SELECT MIN(deadline) AS due FROM sagas WHERE state IN ('reserved', 'authorized', 'recovering')`).one().due;
}

/**
 * Whether the backend may have been asked for what a saga is for: once it is authorized, and (a synchronous
 * creation records its authorization with its completion) while a synchronous creation is still reserved.
 * A plan change or an async creation records its authorization before the backend is asked.
 */
export function mayHaveProvisioned(saga: Pick<Saga, 'state' | 'kind'>, synchronous: boolean): boolean {
  return saga.state === 'authorized' || saga.state === 'recovering' || (saga.state === 'reserved' && saga.kind === 'create' && synchronous);
}

/**
 * Recovery claims a saga past its deadline before it undoes the backend's
 * work: from then on the request's completion is refused, so a resource is
 * never taken down under a charge that was just captured. An authorized saga
 * may have provisioned, and so may a `reserved` creation (its request records
 * the authorization with the completion). Null when the request completed (or
 * failed) first.
 */
export function claimForRecovery(tx: LedgerTx, sagaId: string, synchronous: boolean): Saga | null {
  const saga = getSaga(tx.sql, sagaId);
  if (!saga || !mayHaveProvisioned(saga, synchronous)) return null;
  tx.sql.exec(`UPDATE sagas SET state = 'recovering', updated = ? WHERE id = ?`, tx.now, sagaId);
  return getSaga(tx.sql, sagaId);
}

/** Recovery could not reach the backend: this saga is tried again later, the others go on. */
export function postponeRecovery(tx: LedgerTx, sagaId: string, error: string) {
  tx.sql.exec(`UPDATE sagas SET deadline = ?, error = ? WHERE id = ? AND state = 'recovering'`, tx.now + RECOVERY_RETRY_MS, error.slice(0, 500), sagaId);
  tx.schedule('saga_recovery', tx.now + RECOVERY_RETRY_MS);
}

export const RECOVERY_RETRY_MS = 30_000;

/** Async services: the operation's first read after success carries the credentials, once. */
export function takeCredentials(tx: LedgerTx, sagaId: string): string | null {
  const saga = getSaga(tx.sql, sagaId);
  if (!saga?.credentials) return null;
  tx.sql.exec('UPDATE sagas SET credentials = NULL WHERE id = ?', sagaId);
  return saga.credentials;
}

/**
 * Async services keep the credentials on the saga, in clear, for the operation's
 * first read. Unclaimed this long they are dropped (the agent rotates to get new
 * ones): a secret is not kept for an agent that never came back.
 */
export const UNCLAIMED_CREDENTIALS_MS = 24 * 60 * 60 * 1000;

/** Drops credentials no one will read: the resource's credentials were rotated or it was deleted. */
export function forgetCredentials(tx: LedgerTx, resourceId: string) {
  tx.sql.exec('UPDATE sagas SET credentials = NULL WHERE resource_id = ? AND credentials IS NOT NULL', resourceId);
}

/** Drops the credentials unclaimed past their time, each said in the trail; returns when the next fall due. */
export function dropUnclaimedCredentials(tx: LedgerTx): number | null {
  const unclaimed = tx.sql
    .exec<Pick<Saga, 'id' | 'resource_id' | 'agent_id' | 'mandate_id'>>(
      `SELECT id, resource_id, agent_id, mandate_id FROM sagas WHERE credentials IS NOT NULL AND state = 'completed' AND updated <= ?`,
      tx.now - UNCLAIMED_CREDENTIALS_MS,
    )
    .toArray();
  for (const saga of unclaimed) {
    tx.sql.exec('UPDATE sagas SET credentials = NULL WHERE id = ?', saga.id);
    tx.audit({ actor: { type: 'system', id: 'credentials' }, action: 'resource.credentials_expire', mandate_id: saga.mandate_id, target: saga.resource_id, outcome: 'succeeded', reason: 'unclaimed', related: [saga.id, saga.agent_id] });
  }
  const oldest = tx.sql.exec<{ at: number | null }>(`SELECT MIN(updated) AS at FROM sagas WHERE credentials IS NOT NULL AND state = 'completed'`).one().at;
  return oldest === null ? null : oldest + UNCLAIMED_CREDENTIALS_MS;
}
