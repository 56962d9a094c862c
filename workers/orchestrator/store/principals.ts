// D1 queries for principals, email confirmation and the local mail outbox.
import { sha256Hex } from '../../lib/audit';
import { newId } from '../../lib/ids';

export type PrincipalRow = { id: string; email: string; email_verified: number; password_hash: string; created_at: string };

export async function insertPrincipal(db: D1Database, email: string, passwordHash: string, verified = false): Promise<PrincipalRow | null> {
  const row: PrincipalRow = { id: newId('prn'), email, email_verified: verified ? 1 : 0, password_hash: passwordHash, created_at: new Date().toISOString() };
  const result = await db
    .prepare('INSERT OR IGNORE INTO principals (id, email, email_verified, password_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)')
    .bind(row.id, row.email, row.email_verified, row.password_hash, row.created_at)
    .run();
  return result.meta.changes === 1 ? row : null;
}

export function principalByEmail(db: D1Database, email: string) {
  return db.prepare('SELECT * FROM principals WHERE email = ?1').bind(email).first<PrincipalRow>();
}

export function principalById(db: D1Database, id: string) {
  return db.prepare('SELECT * FROM principals WHERE id = ?1').bind(id).first<PrincipalRow>();
}

export async function createEmailVerification(db: D1Database, principalId: string, token: string, ttlS = 24 * 3600) {
  await db
    .prepare('INSERT INTO email_verifications (token_hash, principal_id, expires_at) VALUES (?1, ?2, ?3)')
    .bind(sha256Hex(token), principalId, Math.floor(Date.now() / 1000) + ttlS)
    .run();
}

/** Uses a confirmation token once; returns the principal it confirmed, or null. */
export async function useEmailVerification(db: D1Database, token: string): Promise<string | null> {
  const now = Math.floor(Date.now() / 1000);
  const row = await db
    .prepare('UPDATE email_verifications SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING principal_id')
    .bind(sha256Hex(token), now)
    .first<{ principal_id: string }>();
  if (!row) return null;
  await db.prepare('UPDATE principals SET email_verified = 1 WHERE id = ?1').bind(row.principal_id).run();
  return row.principal_id;
}

/** `d…@oap.local`: enough for an agent to notice an unexpected approver, not enough to learn the address. */
export function emailHint(email: string): string {
  const [local = '', domain = ''] = email.split('@');
  return `${local.slice(0, 1)}…@${domain}`;
}
