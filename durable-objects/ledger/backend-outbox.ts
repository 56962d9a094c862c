// Work a ledger decision owes a service backend, which acts outside the
// ledger's transactions: a delete (serving ends, storage goes) and a paid
// renewal (a domain's expiry moved on, a suspension lifted). One row per
// resource, written with the decision, kept until the backend confirms and
// tried again with backoff by the alarm, each failure said in the trail; so a
// crash or a backend fault between the two never leaves them apart for good.
import type { LedgerTask, LedgerTx } from './context';

export type BackendOutbox = {
  table: 'deprovision_outbox' | 'backend_renewals';
  task: LedgerTask;
  /** Who acts, and the action its audit events name. */
  actor: string;
  action: string;
  firstRetryMs: number;
  maxRetryMs: number;
};

export const DEPROVISIONS: BackendOutbox = { table: 'deprovision_outbox', task: 'deprovisions', actor: 'deprovision', action: 'resource.deprovision', firstRetryMs: 1000, maxRetryMs: 10 * 60_000 };
export const BACKEND_RENEWALS: BackendOutbox = { table: 'backend_renewals', task: 'backend_renewals', actor: 'renewal', action: 'resource.renew', firstRetryMs: 5000, maxRetryMs: 60 * 60_000 };

export type Owed = { resource_id: string; attempts: number };

export function owedTo<T extends Owed = Owed>(sql: SqlStorage, box: BackendOutbox, resourceId: string): T | undefined {
  return sql.exec<T>(`SELECT * FROM ${box.table} WHERE resource_id = ?`, resourceId).toArray()[0];
}

export function dueTo<T extends Owed = Owed>(sql: SqlStorage, box: BackendOutbox, now: number): T[] {
  return sql.exec<T>(`SELECT * FROM ${box.table} WHERE next_attempt_at <= ? ORDER BY next_attempt_at LIMIT 20`, now).toArray();
}

export function nextDueTo(sql: SqlStorage, box: BackendOutbox): number | null {
  return sql.exec<{ due: number | null }>(`SELECT MIN(next_attempt_at) AS due FROM ${box.table}`).one().due;
}

/** Nothing is owed any more: the backend confirmed (said in the trail after failures), or there is nothing left to do. */
export function settledWith(tx: LedgerTx, box: BackendOutbox, owed: Owed, confirmed: boolean) {
  tx.sql.exec(`DELETE FROM ${box.table} WHERE resource_id = ?`, owed.resource_id);
  if (confirmed && owed.attempts > 0) {
    tx.audit({ actor: { type: 'system', id: box.actor }, action: box.action, target: owed.resource_id, outcome: 'succeeded', related: [`after ${owed.attempts} failed attempts`] });
  }
}

/** The backend failed: tried again with backoff, and said in the trail. */
export function failedAt(tx: LedgerTx, box: BackendOutbox, owed: Owed, error: string) {
  const next = tx.now + Math.min(box.maxRetryMs, box.firstRetryMs * 2 ** Math.min(owed.attempts, 12));
  tx.sql.exec(`UPDATE ${box.table} SET attempts = attempts + 1, next_attempt_at = ? WHERE resource_id = ?`, next, owed.resource_id);
  tx.schedule(box.task, next);
  tx.audit({ actor: { type: 'system', id: box.actor }, action: box.action, target: owed.resource_id, outcome: 'failed', reason: error.slice(0, 200) });
}
