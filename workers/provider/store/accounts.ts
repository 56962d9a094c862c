// D1 queries for provider accounts, their links to orchestrators' principals,
// pending link requests, revocations and received security events.
import { newId } from '../../lib/ids';

export type AccountRow = { id: string; email: string | null; email_verified: number; password_hash: string | null; created_at: string; created_via: string };

export function accountById(db: D1Database, id: string) {
  return db.prepare('SELECT * FROM accounts WHERE id = ?1').bind(id).first<AccountRow>();
}

/** A human's own account (one that can sign in) with this email. */
export function humanAccountByEmail(db: D1Database, email: string) {
  return db.prepare('SELECT * FROM accounts WHERE email = ?1 AND password_hash IS NOT NULL ORDER BY created_at LIMIT 1').bind(email).first<AccountRow>();
}

/** A human's own account; null when one already has this email. */
export async function insertHumanAccount(db: D1Database, email: string, passwordHash: string, verified: boolean): Promise<string | null> {
  const id = newId('acct');
  const result = await db
    .prepare(`INSERT OR IGNORE INTO accounts (id, email, email_verified, password_hash, created_at, created_via) VALUES (?1, ?2, ?3, ?4, ?5, 'sign_up')`)
    .bind(id, email, verified ? 1 : 0, passwordHash, new Date().toISOString())
    .run();
  return result.meta.changes === 1 ? id : null;
}

export async function createEmailVerification(db: D1Database, accountId: string, tokenHash: string, ttlS = 24 * 3600) {
  await db
    .prepare('INSERT INTO email_verifications (token_hash, subject_id, expires_at) VALUES (?1, ?2, ?3)')
    .bind(tokenHash, accountId, Math.floor(Date.now() / 1000) + ttlS)
    .run();
}

/** Uses a confirmation token once; returns the account it confirmed, or null. */
export async function useEmailVerification(db: D1Database, tokenHash: string): Promise<string | null> {
  const now = Math.floor(Date.now() / 1000);
  const row = await db
    .prepare('UPDATE email_verifications SET used_at = ?2 WHERE token_hash = ?1 AND used_at IS NULL AND expires_at > ?2 RETURNING subject_id')
    .bind(tokenHash, now)
    .first<{ subject_id: string }>();
  if (!row) return null;
  await db.prepare('UPDATE accounts SET email_verified = 1 WHERE id = ?1').bind(row.subject_id).run();
  return row.subject_id;
}

export function linkedAccount(db: D1Database, iss: string, sub: string) {
  return db.prepare('SELECT account_id, linked_via FROM account_links WHERE iss = ?1 AND sub = ?2').bind(iss, sub).first<{ account_id: string; linked_via: string }>();
}

/** Is this account already linked to a principal of this orchestrator? */
export async function accountLinkedTo(db: D1Database, accountId: string, iss: string) {
  return (await db.prepare('SELECT 1 AS x FROM account_links WHERE account_id = ?1 AND iss = ?2').bind(accountId, iss).first()) !== null;
}

/**
 * Auto-provisions an account for (iss, sub) unless one is linked already, in
 * one D1 transaction: two concurrent first tokens for one principal end with one account.
 */
export async function provisionAccount(db: D1Database, iss: string, sub: string, email: string | null, emailVerified: boolean) {
  const id = newId('acct');
  const now = new Date().toISOString();
  await db.batch([
    db
      .prepare(
        `INSERT INTO accounts (id, email, email_verified, password_hash, created_at, created_via)
         SELECT ?1, ?2, ?3, NULL, ?4, 'auto' WHERE NOT EXISTS (SELECT 1 FROM account_links WHERE iss = ?5 AND sub = ?6)`,
      )
      .bind(id, email, emailVerified ? 1 : 0, now, iss, sub),
    db
      .prepare(`INSERT OR IGNORE INTO account_links (iss, sub, account_id, linked_at, linked_via) SELECT ?1, ?2, ?3, ?4, 'auto' WHERE EXISTS (SELECT 1 FROM accounts WHERE id = ?3)`)
      .bind(iss, sub, id, now),
  ]);
  const link = (await linkedAccount(db, iss, sub))!;
  return { account_id: link.account_id, created: link.account_id === id };
}

export type LinkRequestRow = {
  id: string;
  iss: string;
  sub: string;
  email: string;
  account_id: string;
  agent_id: string;
  mandate_id: string;
  status: 'pending' | 'linked' | 'declined';
  created_at: string;
  expires_at: number;
};

export const LINK_REQUEST_TTL_MS = 30 * 60 * 1000;

/** One open request per (iss, sub, account): a retrying agent gets the same link_url. */
export async function openLinkRequest(db: D1Database, input: Omit<LinkRequestRow, 'id' | 'status' | 'created_at' | 'expires_at'>) {
  const existing = await db
    .prepare(`SELECT * FROM link_requests WHERE iss = ?1 AND sub = ?2 AND account_id = ?3 AND status = 'pending' AND expires_at > ?4 ORDER BY created_at DESC LIMIT 1`)
    .bind(input.iss, input.sub, input.account_id, Date.now())
    .first<LinkRequestRow>();
  if (existing) return existing;
  const row: LinkRequestRow = { ...input, id: `lnk_${crypto.randomUUID().replaceAll('-', '')}`, status: 'pending', created_at: new Date().toISOString(), expires_at: Date.now() + LINK_REQUEST_TTL_MS };
  await db
    .prepare(
      `INSERT INTO link_requests (id, iss, sub, email, account_id, agent_id, mandate_id, status, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)`,
    )
    .bind(row.id, row.iss, row.sub, row.email, row.account_id, row.agent_id, row.mandate_id, row.status, row.created_at, row.expires_at)
    .run();
  return row;
}

export function linkRequest(db: D1Database, id: string) {
  return db.prepare('SELECT * FROM link_requests WHERE id = ?1').bind(id).first<LinkRequestRow>();
}

/** The human confirmed: the link and the request's end are one D1 transaction. */
export async function confirmLinkRequest(db: D1Database, request: LinkRequestRow): Promise<boolean> {
  const now = new Date().toISOString();
  const [updated] = await db.batch([
    db.prepare(`UPDATE link_requests SET status = 'linked' WHERE id = ?1 AND status = 'pending' AND expires_at > ?2`).bind(request.id, Date.now()),
    db
      .prepare(
        `INSERT OR IGNORE INTO account_links (iss, sub, account_id, linked_at, linked_via)
         SELECT ?1, ?2, ?3, ?4, 'link' WHERE changes() = 1`,
      )
      .bind(request.iss, request.sub, request.account_id, now),
  ]);
  return (updated?.meta.changes ?? 0) === 1;
}

export async function declineLinkRequest(db: D1Database, id: string): Promise<boolean> {
  const result = await db.prepare(`UPDATE link_requests SET status = 'declined' WHERE id = ?1 AND status = 'pending'`).bind(id).run();
  return result.meta.changes === 1;
}

export type RevocationKind = 'mandate' | 'agent' | 'token';

export async function addRevocation(db: D1Database, iss: string, kind: RevocationKind, subjectId: string) {
  await db
    .prepare('INSERT OR IGNORE INTO revocations (iss, kind, subject_id, revoked_at) VALUES (?1, ?2, ?3, ?4)')
    .bind(iss, kind, subjectId, new Date().toISOString())
    .run();
}

/** One query on every token use: is its mandate, its agent or the token itself revoked? */
export async function revokedAny(db: D1Database, iss: string, ids: { mandate: string; agent: string; token: string }): Promise<boolean> {
  const row = await db
    .prepare(
      `SELECT 1 AS x FROM revocations WHERE iss = ?1 AND ((kind = 'mandate' AND subject_id = ?2) OR (kind = 'agent' AND subject_id = ?3) OR (kind = 'token' AND subject_id = ?4)) LIMIT 1`,
    )
    .bind(iss, ids.mandate, ids.agent, ids.token)
    .first();
  return row !== null;
}

/**
 * What the token endpoint needs from D1 for one attestation, in one round
 * trip: whether its mandate or agent is revoked, and the account it links to.
 */
export async function grantLookup(db: D1Database, iss: string, sub: string, ids: { mandate: string; agent: string }) {
  const [revoked, link] = await db.batch([
    db
      .prepare(`SELECT 1 AS x FROM revocations WHERE iss = ?1 AND ((kind = 'mandate' AND subject_id = ?2) OR (kind = 'agent' AND subject_id = ?3)) LIMIT 1`)
      .bind(iss, ids.mandate, ids.agent),
    db.prepare('SELECT account_id, linked_via FROM account_links WHERE iss = ?1 AND sub = ?2').bind(iss, sub),
  ]);
  return {
    revoked: (revoked?.results.length ?? 0) > 0,
    account: (link?.results[0] as { account_id: string; linked_via: string } | undefined) ?? null,
  };
}

/** True the first time this SET is seen. */
export async function firstReceipt(db: D1Database, iss: string, jti: string): Promise<boolean> {
  const result = await db.prepare('INSERT OR IGNORE INTO received_events (iss, jti, received_at) VALUES (?1, ?2, ?3)').bind(iss, jti, new Date().toISOString()).run();
  return result.meta.changes === 1;
}
