// Money, two-phase (DESIGN.md "Money and order"): a charge is reserved as a
// pending hold that counts against every limit at once, then captured or
// voided, each at most once; a hold nobody resolves is voided by the alarm.
// Every decision here is one synchronous body: read, compare, write, no await.
import type { Money } from '../../workers/lib/schemas/money';
import type { Billing } from '../../workers/lib/schemas/catalog';
import { iso, refuse, type LedgerTx, type Outcome, type Refusal } from './context';

/** PROTOCOL.md §3.2: $100 a month unless the human says otherwise. */
export const DEFAULT_MONTHLY_LIMIT: Money = { amount: 10_000, currency: 'usd' };
export const ALERT_THRESHOLDS = [50, 80, 100] as const;

export type HoldStatus = 'pending' | 'captured' | 'voided' | 'refunded';

export type Hold = {
  id: string;
  period: string;
  mandate_id: string | null;
  mandate_root: string | null;
  provider: string | null;
  service: string | null;
  plan: string | null;
  agent_id: string | null;
  amount: number;
  currency: string;
  status: HoldStatus;
  /** How much of a captured charge was given back (pro-rata credits); all of it once `refunded`. */
  refunded: number;
  idempotency_key: string | null;
  resource_ref: string | null;
  description: string | null;
  /** JSON: what the decision rested on (the agent's signed request, the checks); kept as text so it crosses RPC as it was stored. */
  evidence: string | null;
  receipt: string | null;
  created: number;
  expires_at: number;
  resolved_at: number | null;
};

type HoldRow = Hold;

/** What a charge's evidence says that later decisions read: how it was asked for, what it renews, how its plan is billed. */
type ChargeEvidence = {
  agent_request?: { method?: string };
  plan_change?: { full_price?: Money };
  renewal_of?: string;
  /** A renewal's mandate as the provider named it: it is decided under the chain's current link, which may be another. */
  named_mandate_id?: string;
  billing?: Billing;
  /** What the decision checked, as recorded with the hold. */
  mandate_status_at_decision?: string;
  constraint_results?: { type: string; pass: boolean }[];
};

export const evidenceOf = (hold: Pick<Hold, 'evidence'>): ChargeEvidence => (hold.evidence ? (JSON.parse(hold.evidence) as ChargeEvidence) : {});

/** Limits are keyed by (principal, billing period): the calendar month, UTC. */
export const billingPeriod = (ms: number) => new Date(ms).toISOString().slice(0, 7);

export function periodBounds(period: string): { start: string; end: string } {
  const [y, m] = period.split('-').map(Number) as [number, number];
  return { start: new Date(Date.UTC(y, m - 1, 1)).toISOString(), end: new Date(Date.UTC(y, m, 1)).toISOString() };
}

const holdFromRow = (r: HoldRow): Hold => ({ ...r });

export function getHold(sql: SqlStorage, id: string): Hold | null {
  const row = sql.exec<HoldRow>('SELECT * FROM holds WHERE id = ?', id).toArray()[0];
  return row ? holdFromRow(row) : null;
}

export function listHolds(sql: SqlStorage, filter: { period?: string; provider?: string; agent_id?: string; mandate_id?: string; idempotency_key?: string } = {}): Hold[] {
  const clauses: string[] = [];
  const binds: unknown[] = [];
  for (const [column, value] of Object.entries(filter)) {
    if (value === undefined) continue;
    clauses.push(`${column} = ?`);
    binds.push(value);
  }
  return sql
    .exec<HoldRow>(`SELECT * FROM holds ${clauses.length ? `WHERE ${clauses.join(' AND ')}` : ''} ORDER BY created DESC, rowid DESC`, ...binds)
    .toArray()
    .map(holdFromRow);
}

/** Pending plus captured spend of `scope` in `period`. */
export function spent(sql: SqlStorage, period: string, scope: string): number {
  return sql.exec<{ amount: number }>('SELECT amount FROM spend_totals WHERE period = ? AND scope = ?', period, scope).toArray()[0]?.amount ?? 0;
}

function addToTotals(tx: LedgerTx, period: string, scopes: string[], delta: number) {
  // One statement for every scope: a hold counts against up to three totals.
  tx.sql.exec(
    `INSERT INTO spend_totals (period, scope, amount) VALUES ${scopes.map(() => '(?, ?, ?)').join(', ')}
     ON CONFLICT (period, scope) DO UPDATE SET amount = amount + excluded.amount`,
    ...scopes.flatMap((scope) => [period, scope, delta]),
  );
}

/** The principal's (or account's) own monthly limit. */
export function ownLimit(sql: SqlStorage): Money {
  const row = sql.exec<{ amount: number; currency: string }>(`SELECT amount, currency FROM limits WHERE scope = 'principal'`).toArray()[0];
  return row ?? DEFAULT_MONTHLY_LIMIT;
}

export function setOwnLimit(tx: LedgerTx, limit: Money, actor: { type: 'principal'; id: string }) {
  const before = ownLimit(tx.sql);
  tx.sql.exec(
    `INSERT INTO limits (scope, amount, currency, set_by, set_at) VALUES ('principal', ?, ?, ?, ?)
     ON CONFLICT (scope) DO UPDATE SET amount = excluded.amount, currency = excluded.currency, set_by = excluded.set_by, set_at = excluded.set_at`,
    limit.amount,
    limit.currency,
    actor.id,
    iso(tx.now),
  );
  tx.audit({ actor, action: 'limit.set', target: 'principal', outcome: 'succeeded', amount: limit, related: [`previous:${before.amount}`] });
  return limit;
}

export type LimitCheck = { scope: string; limit: Money };
/** `renews_at`: when a renewal refused as not due yet is due (ms); `mandate_id`: the mandate a charge was declined under. */
export type Decline = { ok: false; code: string; detail: string; limit?: Money; spent?: Money; requested?: Money; scope?: string; renews_at?: number; mandate_id?: string };

/**
 * Checks every limit against what is already pending or captured in the
 * period, in order; the first that does not fit declines. Nothing is written.
 */
export function checkLimits(sql: SqlStorage, period: string, amount: Money, limits: LimitCheck[]): Decline | null {
  return exceededLimit(
    amount,
    limits.map((check) => ({ ...check, spent: spent(sql, period, check.scope) })),
  );
}

/** The first limit, in order, that `amount` on top of what each has spent would exceed. */
export function exceededLimit(amount: Money, limits: { scope: string; limit: Money; spent: number }[]): Decline | null {
  for (const { scope, limit, spent: already } of limits) {
    if (limit.currency !== amount.currency || already + amount.amount > limit.amount) {
      return {
        ok: false,
        code: 'spend_limit_exceeded',
        detail: `This charge would exceed the ${scope.split(':')[0]} limit of ${limit.amount} ${limit.currency} this period.`,
        limit,
        spent: { amount: already, currency: limit.currency },
        requested: amount,
        scope,
      };
    }
  }
  return null;
}

/** Authorized charges (pending or captured) created since `sinceMs`, optionally of one service. */
export function authorizedSince(sql: SqlStorage, sinceMs: number, service?: string): number {
  return service === undefined
    ? sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM holds WHERE created >= ? AND status IN ('pending', 'captured')`, sinceMs).one().n
    : // A service's velocity counts what agents asked for: renewals come from the calendar.
      sql.exec<{ n: number }>(`SELECT COUNT(*) AS n FROM holds WHERE service = ? AND created >= ? AND status IN ('pending', 'captured') AND kind IS NULL`, service, sinceMs).one().n;
}

export type NewHold = {
  id: string;
  mandate_id?: string | null;
  mandate_root?: string | null;
  provider?: string | null;
  service?: string | null;
  plan?: string | null;
  agent_id?: string | null;
  amount: Money;
  idempotency_key?: string | null;
  resource_ref?: string | null;
  description?: string | null;
  evidence?: string | null;
  ttl_ms: number;
  /** Totals this hold counts against: 'principal' always, plus e.g. 'mandate:<root>', 'provider:<id>'. */
  scopes: string[];
  /** 'renewal' for a recurring plan's renewal; absent for a charge an agent asked for. */
  kind?: 'renewal';
};

/** Writes the pending hold and counts it against its scopes. The caller has checked the limits in this transaction. */
export function insertHold(tx: LedgerTx, hold: NewHold): Hold {
  const period = billingPeriod(tx.now);
  tx.sql.exec(
    `INSERT INTO holds (id, period, mandate_id, mandate_root, provider, service, plan, agent_id, amount, currency, status,
       idempotency_key, resource_ref, description, evidence, created, expires_at, kind)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?, ?, ?)`,
    hold.id,
    period,
    hold.mandate_id ?? null,
    hold.mandate_root ?? null,
    hold.provider ?? null,
    hold.service ?? null,
    hold.plan ?? null,
    hold.agent_id ?? null,
    hold.amount.amount,
    hold.amount.currency,
    hold.idempotency_key ?? null,
    hold.resource_ref ?? null,
    hold.description ?? null,
    hold.evidence ?? null,
    tx.now,
    tx.now + hold.ttl_ms,
    hold.kind ?? null,
  );
  addToTotals(tx, period, hold.scopes, hold.amount.amount);
  tx.schedule('hold_expiry', tx.now + hold.ttl_ms);
  return {
    id: hold.id,
    period,
    mandate_id: hold.mandate_id ?? null,
    mandate_root: hold.mandate_root ?? null,
    provider: hold.provider ?? null,
    service: hold.service ?? null,
    plan: hold.plan ?? null,
    agent_id: hold.agent_id ?? null,
    amount: hold.amount.amount,
    currency: hold.amount.currency,
    status: 'pending',
    refunded: 0,
    idempotency_key: hold.idempotency_key ?? null,
    resource_ref: hold.resource_ref ?? null,
    description: hold.description ?? null,
    evidence: hold.evidence ?? null,
    receipt: null,
    created: tx.now,
    expires_at: tx.now + hold.ttl_ms,
    resolved_at: null,
  };
}

function scopesOf(hold: Hold): string[] {
  return [
    'principal',
    ...(hold.mandate_root ? [`mandate:${hold.mandate_root}`] : []),
    ...(hold.provider ? [`provider:${hold.provider}`] : hold.service ? [`service:${hold.service}`] : []),
  ];
}

/** pending → captured, once. A capture after a void is refused: the money was released. */
export function captureHold(tx: LedgerTx, id: string, actor: { type: 'provider' | 'system' | 'orchestrator'; id: string }, receipt?: string, related: string[] = []): Outcome<{ hold: Hold }> {
  const hold = getHold(tx.sql, id);
  if (!hold) return refuse('not_found', 'No such charge.');
  // Captured already (a retry), or captured and then given back (a dispute): the capture happened; it is not voided.
  if (hold.status === 'captured' || hold.status === 'refunded') return { ok: true, hold };
  // Past its time the hold is void, whether or not the alarm has come round to it yet.
  if (hold.status === 'pending' && hold.expires_at <= tx.now) {
    voidHold(tx, id, { type: 'system', id: 'expiry' }, 'expired');
    hold.status = 'voided';
  }
  if (hold.status !== 'pending') {
    tx.audit({ actor, action: 'charge.capture', target: id, mandate_id: hold.mandate_id, outcome: 'refused', reason: 'charge_voided', amount: { amount: hold.amount, currency: hold.currency } });
    return refuse('charge_voided', `This charge is ${hold.status}; it can no longer be captured.`);
  }
  tx.sql.exec(`UPDATE holds SET status = 'captured', resolved_at = ?, receipt = COALESCE(?, receipt) WHERE id = ?`, tx.now, receipt ?? null, id);
  tx.audit({ actor, action: 'charge.capture', target: id, mandate_id: hold.mandate_id, outcome: 'succeeded', amount: { amount: hold.amount, currency: hold.currency }, related: [...(hold.resource_ref ? [hold.resource_ref] : []), ...related] });
  return { ok: true, hold: getHold(tx.sql, id)! };
}

/** pending → voided, once, releasing the money from every limit. A captured charge is refunded, never voided. */
export function voidHold(tx: LedgerTx, id: string, actor: { type: 'provider' | 'system' | 'orchestrator' | 'principal'; id: string }, reason: string): Outcome<{ hold: Hold }> {
  const hold = getHold(tx.sql, id);
  if (!hold) return refuse('not_found', 'No such charge.');
  if (hold.status === 'voided') return { ok: true, hold };
  if (hold.status !== 'pending') {
    tx.audit({ actor, action: 'charge.void', target: id, mandate_id: hold.mandate_id, outcome: 'refused', reason: `charge_${hold.status}`, amount: { amount: hold.amount, currency: hold.currency } });
    return refuse('invalid_request', `This charge is ${hold.status}; only a pending charge can be voided.`);
  }
  tx.sql.exec(`UPDATE holds SET status = 'voided', resolved_at = ? WHERE id = ?`, tx.now, id);
  addToTotals(tx, hold.period, scopesOf(hold), -hold.amount);
  tx.audit({ actor, action: 'charge.void', target: id, mandate_id: hold.mandate_id, outcome: 'succeeded', reason, amount: { amount: hold.amount, currency: hold.currency } });
  return { ok: true, hold: getHold(tx.sql, id)! };
}

/** captured → refunded, releasing the money: the charge was reversed. */
export function refundHold(tx: LedgerTx, id: string, actor: { type: 'provider' | 'system' | 'orchestrator' | 'principal'; id: string }, reason: string): Outcome<{ hold: Hold }> {
  const hold = getHold(tx.sql, id);
  if (!hold) return refuse('not_found', 'No such charge.');
  if (hold.status === 'refunded') return { ok: true, hold };
  if (hold.status !== 'captured') {
    tx.audit({ actor, action: 'charge.refund', target: id, mandate_id: hold.mandate_id, outcome: 'refused', reason: `charge_${hold.status}`, amount: { amount: hold.amount, currency: hold.currency } });
    return refuse('invalid_request', `This charge is ${hold.status}; only a captured charge is refunded.`);
  }
  // What a partial refund already gave back left the totals then: only the rest leaves now.
  const rest = hold.amount - hold.refunded;
  tx.sql.exec(`UPDATE holds SET status = 'refunded', refunded = amount, resolved_at = ? WHERE id = ?`, tx.now, id);
  addToTotals(tx, hold.period, scopesOf(hold), -rest);
  tx.audit({ actor, action: 'charge.refund', target: id, mandate_id: hold.mandate_id, outcome: 'succeeded', reason, amount: { amount: rest, currency: hold.currency } });
  return { ok: true, hold: getHold(tx.sql, id)! };
}

export type PartialRefund = { amount: number; currency: string; reason: string; key: string };

/**
 * Part of a captured charge given back (a downgrade's pro-rata credit): the
 * totals of the hold's period shrink by the amount, never by more than what
 * is left to refund, and each key is applied once (a retry answers the same).
 * A charge refunded down to nothing is `refunded`.
 */
export function refundPart(tx: LedgerTx, id: string, refund: PartialRefund, actor: { type: 'provider' | 'system' | 'orchestrator'; id: string }): Outcome<{ hold: Hold; replayed: boolean }> | (Refusal & { refundable: number }) {
  const hold = getHold(tx.sql, id);
  if (!hold) return refuse('not_found', 'No such charge.');
  const done = tx.sql.exec<{ amount: number }>('SELECT amount FROM refunds WHERE charge_id = ? AND key = ?', id, refund.key).toArray()[0];
  if (done) {
    return done.amount === refund.amount ? { ok: true, hold, replayed: true } : refuse('idempotency_key_reused', 'This refund key was used for another amount.');
  }
  const refundable = hold.status === 'captured' ? hold.amount - hold.refunded : 0;
  if (hold.status !== 'captured' || refund.currency !== hold.currency || refund.amount > refundable) {
    const reason = hold.status !== 'captured' ? `charge_${hold.status}` : refund.currency !== hold.currency ? 'currency_mismatch' : 'exceeds_refundable';
    tx.audit({ actor, action: 'charge.refund', target: id, mandate_id: hold.mandate_id, outcome: 'refused', reason, amount: { amount: refund.amount, currency: refund.currency }, related: [refund.key] });
    const detail = hold.status !== 'captured' ? `This charge is ${hold.status}; only a captured charge is refunded.` : `At most ${refundable} ${hold.currency} of this charge remains to refund.`;
    return { ...refuse('invalid_request', detail), refundable };
  }
  tx.sql.exec(
    `UPDATE holds SET refunded = refunded + ?1, status = CASE WHEN refunded + ?1 >= amount THEN 'refunded' ELSE status END WHERE id = ?2`,
    refund.amount,
    id,
  );
  tx.sql.exec('INSERT INTO refunds (charge_id, key, amount, reason, created) VALUES (?, ?, ?, ?, ?)', id, refund.key, refund.amount, refund.reason, tx.now);
  addToTotals(tx, hold.period, scopesOf(hold), -refund.amount);
  tx.audit({ actor, action: 'charge.refund', target: id, mandate_id: hold.mandate_id, outcome: 'succeeded', reason: refund.reason, amount: { amount: refund.amount, currency: hold.currency }, related: [refund.key] });
  return { ok: true, hold: getHold(tx.sql, id)!, replayed: false };
}

/** Pending holds past their deadline. */
export function expiredHolds(sql: SqlStorage, now: number): Hold[] {
  return sql.exec<HoldRow>(`SELECT * FROM holds WHERE status = 'pending' AND expires_at <= ? ORDER BY expires_at LIMIT 100`, now).toArray().map(holdFromRow);
}

export function nextHoldExpiry(sql: SqlStorage): number | null {
  return sql.exec<{ due: number | null }>(`SELECT MIN(expires_at) AS due FROM holds WHERE status = 'pending'`).one().due;
}

/**
 * Budget alerts (§3.2): when this period's spend of `scope` crosses 50 %,
 * 80 % or 100 % of `limit`, once per period and threshold: a notification,
 * an audit event, and a webhook to each of the principal's endpoints.
 */
export function raiseBudgetAlerts(tx: LedgerTx, period: string, scope: string, limit: Money, before: number, after: number) {
  if (limit.amount <= 0) return;
  for (const threshold of ALERT_THRESHOLDS) {
    const mark = (limit.amount * threshold) / 100;
    if (before >= mark || after < mark) continue;
    const inserted = tx.sql.exec('INSERT OR IGNORE INTO alerts_sent (period, scope, threshold) VALUES (?, ?, ?)', period, scope, threshold).rowsWritten;
    if (!inserted) continue;
    const data = { period, scope: scope.split(':')[0], id: scope.split(':')[1] ?? null, threshold, limit, spent: { amount: after, currency: limit.currency } };
    const event = tx.audit({ actor: { type: 'system', id: 'budget' }, action: 'budget.alert', target: scope, outcome: 'succeeded', reason: `${threshold}%`, amount: data.spent });
    notifyOnce(tx, `ntf_${event.id.slice(4)}`, 'budget.alert', data);
  }
}

export type WebhookEvent = { id: string; type: string; created: string; data: unknown };

/** A notification the human reads (GET /v1/notifications) and its webhook, once per `id`; false if it was told already. */
export function notifyOnce(tx: LedgerTx, id: string, type: string, data: unknown): boolean {
  const told = tx.sql.exec('INSERT OR IGNORE INTO notifications (id, type, created, data) VALUES (?, ?, ?, ?)', id, type, iso(tx.now), JSON.stringify(data)).rowsWritten > 0;
  if (told) queueWebhook(tx, { id, type, created: iso(tx.now), data });
  return told;
}

export function queueWebhook(tx: LedgerTx, event: WebhookEvent) {
  const endpoints = tx.sql.exec<{ id: string }>('SELECT id FROM webhook_endpoints').toArray();
  for (const endpoint of endpoints) {
    tx.sql.exec('INSERT INTO webhook_deliveries (endpoint_id, event, attempts, next_attempt_at) VALUES (?, ?, 0, ?)', endpoint.id, JSON.stringify(event), tx.now);
  }
  if (endpoints.length) tx.schedule('webhooks', tx.now);
}
