// Idempotency-Key records (PROTOCOL.md Conventions), in the caller's ledger object.
import type { LedgerTx } from './context';

export const TTL_MS = 24 * 60 * 60 * 1000;
/** A request still "in progress" after this long is presumed dead and may be retried. */
export const LEASE_MS = 60_000;
export const SWEEP_MS = 60 * 60 * 1000;

export type StoredResponse = { status: number; headers: Record<string, string>; body: string };
export type IdempotencyStart =
  | { state: 'started' }
  | { state: 'replay'; response: StoredResponse }
  | { state: 'mismatch' }
  | { state: 'in_progress' };

type Row = { fingerprint: string; state: string; status: number | null; headers: string | null; body: string | null; expires_at: number };

export function begin(tx: LedgerTx, scope: string, key: string, fingerprint: string): IdempotencyStart {
  const row = tx.sql
    .exec<Row>('SELECT fingerprint, state, status, headers, body, expires_at FROM idempotency WHERE scope = ? AND key = ?', scope, key)
    .toArray()[0];
  const live = row && row.expires_at > tx.now;
  if (live && row.fingerprint !== fingerprint) return { state: 'mismatch' };
  if (live && row.state === 'completed') return { state: 'replay', response: { status: row.status!, headers: JSON.parse(row.headers!), body: row.body! } };
  if (live && row.state === 'in_progress') return { state: 'in_progress' };
  tx.sql.exec(
    `INSERT INTO idempotency (scope, key, fingerprint, state, created_at, expires_at) VALUES (?, ?, ?, 'in_progress', ?, ?)
     ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, state = 'in_progress', status = NULL,
       headers = NULL, body = NULL, created_at = excluded.created_at, expires_at = excluded.expires_at`,
    scope,
    key,
    fingerprint,
    tx.now,
    tx.now + LEASE_MS,
  );
  tx.schedule('idempotency_sweep', tx.now + SWEEP_MS);
  return { state: 'started' };
}

/** Records the response a key will replay for 24 h. The caller has already removed credentials. */
export function complete(sql: SqlStorage, scope: string, key: string, fingerprint: string, response: StoredResponse): void {
  sql.exec(
    `UPDATE idempotency SET state = 'completed', status = ?, headers = ?, body = ?, expires_at = created_at + ?
     WHERE scope = ? AND key = ? AND fingerprint = ?`,
    response.status,
    JSON.stringify(response.headers),
    response.body,
    TTL_MS,
    scope,
    key,
    fingerprint,
  );
}

/** A 5xx is not remembered: the key may be retried at once. */
export function abandon(sql: SqlStorage, scope: string, key: string, fingerprint: string): void {
  sql.exec(`DELETE FROM idempotency WHERE scope = ? AND key = ? AND fingerprint = ? AND state = 'in_progress'`, scope, key, fingerprint);
}

export function sweep(sql: SqlStorage, now: number): number {
  sql.exec('DELETE FROM idempotency WHERE expires_at <= ?', now);
  return sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM idempotency').one().n;
}
