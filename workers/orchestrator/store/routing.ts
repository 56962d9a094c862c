// D1 routing for agent-owned state that lives in principals' ledger objects:
// which principal a key thumbprint or a mandate belongs to, and first-contact
// requests that no principal has claimed yet.
export type AgentKeyRow = { jkt: string; agent_id: string; principal_id: string };

export function agentByThumbprint(db: D1Database, jkt: string) {
  return db.prepare('SELECT jkt, agent_id, principal_id FROM agent_keys WHERE jkt = ?1').bind(jkt).first<AgentKeyRow>();
}

export function agentById(db: D1Database, agentId: string) {
  return db.prepare('SELECT jkt, agent_id, principal_id FROM agent_keys WHERE agent_id = ?1').bind(agentId).first<AgentKeyRow>();
}

/** Claims a thumbprint for an agent: false when another agent already holds it (§2.1: one key, one agent). */
export async function claimAgentKey(db: D1Database, row: AgentKeyRow): Promise<boolean> {
  const result = await db
    .prepare('INSERT OR IGNORE INTO agent_keys (jkt, agent_id, principal_id) VALUES (?1, ?2, ?3)')
    .bind(row.jkt, row.agent_id, row.principal_id)
    .run();
  return result.meta.changes === 1;
}

export async function releaseAgentKey(db: D1Database, agentId: string) {
  await db.prepare('DELETE FROM agent_keys WHERE agent_id = ?1').bind(agentId).run();
}

export type MandateRoute = { mandate_id: string; principal_id: string | null; requester_jkt: string };

export function mandateRoute(db: D1Database, mandateId: string) {
  return db.prepare('SELECT mandate_id, principal_id, requester_jkt FROM mandate_routes WHERE mandate_id = ?1').bind(mandateId).first<MandateRoute>();
}

export async function addMandateRoute(db: D1Database, route: MandateRoute) {
  await db
    .prepare('INSERT INTO mandate_routes (mandate_id, principal_id, requester_jkt) VALUES (?1, ?2, ?3)')
    .bind(route.mandate_id, route.principal_id, route.requester_jkt)
    .run();
}

/** A route written ahead of a request the ledger then refused: the mandate it would have found does not exist. */
export async function removeMandateRoute(db: D1Database, mandateId: string) {
  await db.prepare('DELETE FROM mandate_routes WHERE mandate_id = ?1').bind(mandateId).run();
}

export type FirstContactRow = {
  mandate_id: string;
  jkt: string;
  public_jwk: string;
  agent_name: string;
  request: string;
  user_code_hash: string;
  origin_address: string | null;
  status: 'pending' | 'approving' | 'approved' | 'denied';
  created_at: string;
  expires_at: number;
  last_poll_at: number | null;
  decided_by: string | null;
  decided_at: string | null;
};

export async function insertFirstContact(db: D1Database, row: Omit<FirstContactRow, 'status' | 'last_poll_at' | 'decided_by' | 'decided_at'>) {
  await db.batch([
    db.prepare('INSERT INTO mandate_routes (mandate_id, principal_id, requester_jkt) VALUES (?1, NULL, ?2)').bind(row.mandate_id, row.jkt),
    db
      .prepare(
        `INSERT INTO first_contact_requests (mandate_id, jkt, public_jwk, agent_name, request, user_code_hash, origin_address, status, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9)`,
      )
      .bind(row.mandate_id, row.jkt, row.public_jwk, row.agent_name, row.request, row.user_code_hash, row.origin_address, row.created_at, row.expires_at),
  ]);
}

export function firstContact(db: D1Database, mandateId: string) {
  return db.prepare('SELECT * FROM first_contact_requests WHERE mandate_id = ?1').bind(mandateId).first<FirstContactRow>();
}

/** §2.4: the first-contact requests a key made, newest first (what an unregistered key may list). */
export async function firstContactsOfKey(db: D1Database, jkt: string): Promise<FirstContactRow[]> {
  return (await db.prepare('SELECT * FROM first_contact_requests WHERE jkt = ?1 ORDER BY created_at DESC, rowid DESC').bind(jkt).all<FirstContactRow>()).results;
}

/** Records a poll unless the last was less than `intervalS` ago; false means slow down. */
export async function recordFirstContactPoll(db: D1Database, mandateId: string, intervalS: number): Promise<boolean> {
  const now = Date.now();
  const row = await db
    .prepare('UPDATE first_contact_requests SET last_poll_at = ?2 WHERE mandate_id = ?1 AND (last_poll_at IS NULL OR last_poll_at <= ?3) RETURNING mandate_id')
    .bind(mandateId, now, now - intervalS * 1000)
    .first();
  return row !== null;
}

/**
 * Moves a pending request to `approving` for one principal, atomically, so two
 * humans cannot both claim it. A claim by the same principal can be resumed.
 */
export async function claimFirstContact(db: D1Database, mandateId: string, principalId: string): Promise<boolean> {
  const row = await db
    .prepare(
      `UPDATE first_contact_requests SET status = 'approving', decided_by = ?2
       WHERE mandate_id = ?1 AND expires_at > ?3 AND (status = 'pending' OR (status = 'approving' AND decided_by = ?2)) RETURNING mandate_id`,
    )
    .bind(mandateId, principalId, Date.now())
    .first();
  return row !== null;
}

/** Undoes a claim whose approval was refused, so the request can still be decided by anyone or expire. */
export async function releaseFirstContact(db: D1Database, mandateId: string, principalId: string) {
  await db
    .prepare(`UPDATE first_contact_requests SET status = 'pending', decided_by = NULL WHERE mandate_id = ?1 AND status = 'approving' AND decided_by = ?2`)
    .bind(mandateId, principalId)
    .run();
}

export async function finishFirstContact(db: D1Database, mandateId: string, principalId: string, status: 'approved' | 'denied') {
  await db.batch([
    db
      .prepare('UPDATE first_contact_requests SET status = ?2, decided_by = ?3, decided_at = ?4 WHERE mandate_id = ?1')
      .bind(mandateId, status, principalId, new Date().toISOString()),
    ...(status === 'approved' ? [db.prepare('UPDATE mandate_routes SET principal_id = ?2 WHERE mandate_id = ?1').bind(mandateId, principalId)] : []),
  ]);
}

export async function denyFirstContact(db: D1Database, mandateId: string, principalId: string): Promise<boolean> {
  const row = await db
    .prepare(`UPDATE first_contact_requests SET status = 'denied', decided_by = ?2, decided_at = ?3 WHERE mandate_id = ?1 AND status = 'pending' AND expires_at > ?4 RETURNING mandate_id`)
    .bind(mandateId, principalId, new Date().toISOString(), Date.now())
    .first();
  return row !== null;
}
