// Single-use values (DPoP jti, attestation jti, message-signature nonces):
// seen once, remembered until they could no longer be accepted anyway.
import type { LedgerTx } from './context';

export const NONCE_SWEEP_MS = 10 * 60 * 1000;

/** True when `nonce` is fresh, recording it; false when it was seen before. */
export function consumeNonce(tx: LedgerTx, nonce: string, expiresAtMs: number): boolean {
  // One statement: a new nonce is inserted, an expired one taken over, a live one left alone (no row written).
  const written = tx.sql.exec(
    'INSERT INTO seen_nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT (nonce) DO UPDATE SET expires_at = excluded.expires_at WHERE seen_nonces.expires_at <= ?',
    nonce,
    expiresAtMs,
    tx.now,
  ).rowsWritten;
  if (written === 0) return false;
  tx.schedule('nonce_sweep', tx.now + NONCE_SWEEP_MS);
  return true;
}

export function sweepNonces(sql: SqlStorage, now: number): number {
  sql.exec('DELETE FROM seen_nonces WHERE expires_at <= ?', now);
  return sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM seen_nonces').one().n;
}
