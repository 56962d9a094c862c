// Agents and mandates of one principal, kept in the principal's ledger object
// so that every decision about them (approve, revoke, attest, and later charge)
// is serialized with the audit event that records it.
import { decodeJwt, type JWK } from 'jose';
import { evaluateForProvider } from '../../workers/lib/mandate-constraints';
import type { Money } from '../../workers/lib/schemas/money';
import type { MandateScope, MandateStatus } from '../../workers/lib/schemas/mandates';
import { canonicalJson } from '../../workers/lib/audit';
import { DAY_MS } from '../../workers/lib/time';
import { iso, refuse, type LedgerTx, type Outcome, type Refusal } from './context';
import { scheduleExpiryNotice } from './mandate-expiry';
import { consumeNonce } from './nonces';

export type StoredAgent = {
  agent_id: string;
  name: string;
  public_jwk: JWK;
  key_thumbprint: string;
  status: 'active' | 'revoked';
  registered_via: 'principal' | 'first_contact';
  created: string;
  revoked_at: string | null;
};

export type MandateTerms = {
  description: string;
  scope: MandateScope[];
  spend_limit: Money & { period: 'month' };
  expires_at: string;
  share_email: boolean;
  supersedes: string | null;
};

export type StoredMandate = {
  mandate_id: string;
  agent_id: string;
  status: MandateStatus;
  /** What the agent asked for. */
  requested: MandateTerms;
  /** What the human approved (limits possibly lowered); null until approved. */
  approved: MandateTerms | null;
  first_contact: boolean;
  created: string;
  pending_until: number;
  decided_at: string | null;
  approver_email_hint: string | null;
  display_hash: string | null;
  mandate_jws: string | null;
  revoked_at: string | null;
  display_document: string | null;
  /** The first mandate of a chain of supersessions: its spend is the chain's. */
  root: string;
  /** For a superseded mandate, the approved mandate that superseded it: the chain's next link. */
  superseded_by: string | null;
};

export type Actor = { type: 'principal' | 'agent' | 'system'; id: string };

type MandateRow = {
  id: string;
  agent_id: string;
  status: MandateStatus;
  requested: string;
  approved: string | null;
  first_contact: number;
  created: string;
  pending_until: number;
  last_poll_at: number | null;
  decided_at: string | null;
  approver_email_hint: string | null;
  display_hash: string | null;
  mandate_jws: string | null;
  revoked_at: string | null;
  display_document: string | null;
  root: string | null;
  superseded_by: string | null;
};

type AgentRow = { id: string; name: string; public_jwk: string; jkt: string; status: 'active' | 'revoked'; via: StoredAgent['registered_via']; created: string; revoked_at: string | null };

const agentFromRow = (r: AgentRow): StoredAgent => ({
  agent_id: r.id,
  name: r.name,
  public_jwk: JSON.parse(r.public_jwk) as JWK,
  key_thumbprint: r.jkt,
  status: r.status,
  registered_via: r.via,
  created: r.created,
  revoked_at: r.revoked_at,
});

/** The stored status, with time applied: a request nobody decided, or a mandate past its end, is expired. */
export function effectiveStatus(row: Pick<MandateRow, 'status' | 'pending_until'> & { expires_at: string }, now: number): MandateStatus {
  if (row.status === 'pending' && now > row.pending_until) return 'expired';
  if (row.status === 'active' && now >= Date.parse(row.expires_at)) return 'expired';
  return row.status;
}

function mandateFromRow(r: MandateRow, now: number): StoredMandate {
  const requested = JSON.parse(r.requested) as MandateTerms;
  const approved = r.approved ? (JSON.parse(r.approved) as MandateTerms) : null;
  return {
    mandate_id: r.id,
    agent_id: r.agent_id,
    status: effectiveStatus({ status: r.status, pending_until: r.pending_until, expires_at: (approved ?? requested).expires_at }, now),
    requested,
    approved,
    first_contact: r.first_contact === 1,
    created: r.created,
    pending_until: r.pending_until,
    decided_at: r.decided_at,
    approver_email_hint: r.approver_email_hint,
    display_hash: r.display_hash,
    mandate_jws: r.mandate_jws,
    revoked_at: r.revoked_at,
    display_document: r.display_document,
    root: r.root ?? r.id,
    superseded_by: r.superseded_by,
  };
}

export function getAgent(sql: SqlStorage, agentId: string): StoredAgent | null {
  const row = sql.exec<AgentRow>('SELECT * FROM agents WHERE id = ?', agentId).toArray()[0];
  return row ? agentFromRow(row) : null;
}

export function listAgents(sql: SqlStorage): StoredAgent[] {
  return sql.exec<AgentRow>('SELECT * FROM agents ORDER BY rowid').toArray().map(agentFromRow);
}

export function getMandate(sql: SqlStorage, mandateId: string, now: number): StoredMandate | null {
  const row = sql.exec<MandateRow>('SELECT * FROM mandates WHERE id = ?', mandateId).toArray()[0];
  return row ? mandateFromRow(row, now) : null;
}

export function listMandates(sql: SqlStorage, now: number, agentId?: string): StoredMandate[] {
  const rows = agentId
    ? sql.exec<MandateRow>('SELECT * FROM mandates WHERE agent_id = ? ORDER BY rowid DESC', agentId).toArray()
    : sql.exec<MandateRow>('SELECT * FROM mandates ORDER BY rowid DESC').toArray();
  return rows.map((r) => mandateFromRow(r, now));
}

export function registerAgent(
  tx: LedgerTx,
  input: { agent_id: string; name: string; public_jwk: JWK; key_thumbprint: string; via: StoredAgent['registered_via'] },
  actor: Actor,
): StoredAgent {
  tx.sql.exec(
    `INSERT INTO agents (id, name, public_jwk, jkt, status, via, created) VALUES (?, ?, ?, ?, 'active', ?, ?)`,
    input.agent_id,
    input.name,
    JSON.stringify(input.public_jwk),
    input.key_thumbprint,
    input.via,
    iso(tx.now),
  );
  tx.audit({ actor, action: 'agent.register', target: input.agent_id, outcome: 'succeeded', related: [input.key_thumbprint] });
  return getAgent(tx.sql, input.agent_id)!;
}

/**
 * §2.4: a proof from a registered agent's key is accepted once (its jti) and
 * only while the agent is active. Refusals are audited.
 */
export function authenticateAgent(tx: LedgerTx, agentId: string, proofJti: string, action: string): Outcome<{ agent: StoredAgent }> {
  const agent = getAgent(tx.sql, agentId);
  if (!agent) return refuse('invalid_signature', 'unknown agent');
  const actor = { type: 'agent' as const, id: agentId };
  if (agent.status === 'revoked') {
    tx.audit({ actor, action, outcome: 'refused', reason: 'agent_revoked' });
    return refuse('agent_revoked', 'This agent has been revoked by its principal.');
  }
  if (!consumeNonce(tx, `dpop:${agent.key_thumbprint}:${proofJti}`, tx.now + 5 * 60 * 1000)) {
    tx.audit({ actor, action, outcome: 'refused', reason: 'replayed' });
    return refuse('replayed', 'This DPoP proof was already used.');
  }
  return { ok: true, agent };
}

export function revokeAgent(tx: LedgerTx, agentId: string, actor: Actor): Outcome<{ agent: StoredAgent }> {
  const agent = getAgent(tx.sql, agentId);
  if (!agent) return refuse('not_found', 'No such agent.');
  if (agent.status === 'revoked') return { ok: true, agent };
  const revokedAt = iso(tx.now);
  tx.sql.exec(`UPDATE agents SET status = 'revoked', revoked_at = ? WHERE id = ?`, revokedAt, agentId);
  const providers = new Set<string>();
  for (const m of listMandates(tx.sql, tx.now, agentId)) {
    if (m.approved) m.approved.scope.forEach((s) => providers.add(s.provider));
    if (m.status === 'active' || m.status === 'pending') {
      tx.sql.exec(`UPDATE mandates SET status = 'revoked', revoked_at = ? WHERE id = ?`, revokedAt, m.mandate_id);
      tx.audit({ actor, action: 'mandate.revoke', mandate_id: m.mandate_id, target: m.mandate_id, outcome: 'succeeded', reason: 'agent_revoked' });
    }
  }
  tx.audit({ actor, action: 'agent.revoke', target: agentId, outcome: 'succeeded' });
  for (const provider of providers) queueProviderEvent(tx, provider, 'agent.revoked', { agent_id: agentId });
  return { ok: true, agent: getAgent(tx.sql, agentId)! };
}

export function createMandate(
  tx: LedgerTx,
  input: { mandate_id: string; agent_id: string; terms: MandateTerms; pending_until: number; first_contact: boolean },
  // The agent asks, or its human asks on its behalf (an extension from the dashboard, approved like any request).
  actor: Actor = { type: 'agent', id: input.agent_id },
  /**
   * A request to supersede a mandate while another waits to: the waiting one answers it if it asks the same (a form
   * sent twice), and it is refused if it asks otherwise (the human decides the waiting one first, never another's
   * terms thinking them their own).
   */
  options: { reuseWaiting?: boolean } = {},
): Outcome<{ mandate: StoredMandate; reused: boolean }> | (Refusal & { waiting?: string }) {
  if (input.terms.supersedes) {
    const previous = getMandate(tx.sql, input.terms.supersedes, tx.now);
    if (!previous || previous.agent_id !== input.agent_id || previous.status !== 'active') {
      tx.audit({ actor, action: 'mandate.request', target: input.mandate_id, outcome: 'refused', reason: 'invalid_request' });
      return refuse('invalid_request', 'supersedes must name an active mandate of this agent.');
    }
    const waiting = options.reuseWaiting ? waitingSuccessors(tx.sql, input.terms.supersedes, tx.now) : [];
    const same = waiting.find((m) => sameRequest(m.requested, input.terms));
    if (same) return { ok: true, mandate: same, reused: true };
    if (waiting.length > 0) {
      tx.audit({ actor, action: 'mandate.request', target: input.mandate_id, outcome: 'refused', reason: 'invalid_request', related: waiting.map((m) => m.mandate_id) });
      return { ...refuse('invalid_request', 'Another request to change this mandate waits for a decision: it is decided first.'), waiting: waiting[0]!.mandate_id };
    }
  }
  insertMandate(tx, input, 'pending');
  tx.audit({ actor, action: 'mandate.request', mandate_id: input.mandate_id, target: input.mandate_id, outcome: 'succeeded' });
  return { ok: true, mandate: getMandate(tx.sql, input.mandate_id, tx.now)!, reused: false };
}

function insertMandate(tx: LedgerTx, input: { mandate_id: string; agent_id: string; terms: MandateTerms; pending_until: number; first_contact: boolean }, status: MandateStatus) {
  // Spend against a mandate is summed over its supersedes chain (§2.1): every link shares the chain's root.
  const root = input.terms.supersedes ? (mandateRoot(tx.sql, input.terms.supersedes) ?? input.mandate_id) : input.mandate_id;
  tx.sql.exec(
    `INSERT INTO mandates (id, agent_id, status, requested, first_contact, created, pending_until, root) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    input.mandate_id,
    input.agent_id,
    status,
    JSON.stringify(input.terms),
    input.first_contact ? 1 : 0,
    iso(tx.now),
    input.pending_until,
    root,
  );
}

export function mandateRoot(sql: SqlStorage, mandateId: string): string | null {
  const row = sql.exec<{ root: string | null }>('SELECT root FROM mandates WHERE id = ?', mandateId).toArray()[0];
  return row ? (row.root ?? mandateId) : null;
}

/** §2.1: between polls of a pending mandate the agent waits `interval`; the first poll and reads of a decided one never wait. */
export function pollMandate(tx: LedgerTx, mandateId: string, agentId: string, intervalS: number): Outcome<{ mandate: StoredMandate }> {
  const row = tx.sql.exec<MandateRow>('SELECT * FROM mandates WHERE id = ?', mandateId).toArray()[0];
  if (!row || row.agent_id !== agentId) return refuse('not_found', 'No such mandate.');
  const mandate = mandateFromRow(row, tx.now);
  if (mandate.status === 'pending') {
    if (row.last_poll_at !== null && tx.now - row.last_poll_at < intervalS * 1000) return refuse('slow_down', `Poll at most every ${intervalS} seconds.`);
    tx.sql.exec('UPDATE mandates SET last_poll_at = ? WHERE id = ?', tx.now, mandateId);
  }
  return { ok: true, mandate };
}

export type Approval = {
  approved: MandateTerms;
  display_hash: string;
  /** The canonical display document the human saw, exactly as hashed (JCS). */
  display_document?: string;
  mandate_jws: string;
  approver_email_hint: string;
  decided_at: string;
};

export function approveMandate(tx: LedgerTx, mandateId: string, approval: Approval, actor: Actor): Outcome<{ mandate: StoredMandate }> {
  const mandate = getMandate(tx.sql, mandateId, tx.now);
  if (!mandate) return refuse('not_found', 'No such mandate.');
  const refused = (code: string, detail: string) => {
    tx.audit({ actor, action: 'mandate.approve', mandate_id: mandateId, target: mandateId, outcome: 'refused', reason: code });
    return refuse(code, detail);
  };
  if (mandate.status !== 'pending') return refused('mandate_inactive', `This mandate is ${mandate.status}, not pending.`);
  const agent = getAgent(tx.sql, mandate.agent_id);
  if (!agent || agent.status !== 'active') return refused('agent_revoked', 'The agent asking has been revoked.');
  if (approval.approved.supersedes) {
    const previous = getMandate(tx.sql, approval.approved.supersedes, tx.now);
    if (!previous || previous.status !== 'active' || previous.agent_id !== mandate.agent_id) {
      return refused('mandate_inactive', 'The mandate this one supersedes is no longer active.');
    }
    tx.sql.exec(`UPDATE mandates SET status = 'superseded', revoked_at = ?, superseded_by = ? WHERE id = ?`, approval.decided_at, mandateId, previous.mandate_id);
    tx.audit({ actor, action: 'mandate.supersede', mandate_id: previous.mandate_id, target: previous.mandate_id, outcome: 'succeeded', related: [mandateId] });
    for (const s of previous.approved?.scope ?? []) queueProviderEvent(tx, s.provider, 'mandate.revoked', { mandate_id: previous.mandate_id, agent_id: previous.agent_id });
  }
  setApproved(tx, mandateId, approval);
  tx.audit({ actor, action: 'mandate.approve', mandate_id: mandateId, target: mandateId, outcome: 'succeeded', related: [approval.display_hash] });
  // Another request to supersede the same mandate (the agent's extension and the human's, a form sent twice) can no longer be approved.
  if (approval.approved.supersedes) denyMootSuccessors(tx, approval.approved.supersedes, actor, 'superseded_by_another', [mandateId]);
  return { ok: true, mandate: getMandate(tx.sql, mandateId, tx.now)! };
}

/** Whether two requests ask the same terms: those asked a day apart at most to end at once are the same length asked again. */
function sameRequest(a: MandateTerms, b: MandateTerms): boolean {
  const rest = (t: MandateTerms) => canonicalJson({ ...t, expires_at: null });
  return rest(a) === rest(b) && Math.abs(Date.parse(a.expires_at) - Date.parse(b.expires_at)) < DAY_MS;
}

/** The requests to supersede a mandate still waiting for the human's decision (not expired), the earliest first. */
export function waitingSuccessors(sql: SqlStorage, mandateId: string, now: number): StoredMandate[] {
  return sql
    .exec<MandateRow>(`SELECT * FROM mandates WHERE status = 'pending' AND json_extract(requested, '$.supersedes') = ? ORDER BY created`, mandateId)
    .toArray()
    .map((row) => mandateFromRow(row, now))
    .filter((m) => m.status === 'pending');
}

/**
 * Requests still pending to supersede a mandate that is no longer active (superseded by another, revoked) can never be
 * approved: they are denied now, so that no one (the human, an agent waiting on one) waits on them.
 */
function denyMootSuccessors(tx: LedgerTx, mandateId: string, actor: Actor, reason: string, related: string[] = []) {
  for (const { mandate_id: id } of waitingSuccessors(tx.sql, mandateId, tx.now)) {
    tx.sql.exec(`UPDATE mandates SET status = 'denied', decided_at = ? WHERE id = ?`, iso(tx.now), id);
    tx.audit({ actor, action: 'mandate.deny', mandate_id: id, target: id, outcome: 'succeeded', reason, related });
  }
}

function setApproved(tx: LedgerTx, mandateId: string, approval: Approval) {
  scheduleExpiryNotice(tx, approval.approved.expires_at);
  tx.sql.exec(
    `UPDATE mandates SET status = 'active', approved = ?, decided_at = ?, approver_email_hint = ?, display_hash = ?, mandate_jws = ?, display_document = ? WHERE id = ?`,
    JSON.stringify(approval.approved),
    approval.decided_at,
    approval.approver_email_hint,
    approval.display_hash,
    approval.mandate_jws,
    approval.display_document ?? null,
    mandateId,
  );
}

/**
 * Approval of a first-contact request: the agent is registered to the
 * approving principal (unless an earlier request of the same key already made
 * it this principal's agent) and, per §4, its request is written into this
 * chain with the agent as actor. Idempotent by mandate id (a retried approval).
 */
export function approveFirstContact(
  tx: LedgerTx,
  input: { agent: { agent_id: string; name: string; public_jwk: JWK; key_thumbprint: string }; mandate_id: string; requested: MandateTerms; approval: Approval },
  actor: Actor,
): Outcome<{ mandate: StoredMandate }> {
  const existing = getMandate(tx.sql, input.mandate_id, tx.now);
  if (existing) return { ok: true, mandate: existing };
  const known = getAgent(tx.sql, input.agent.agent_id);
  if (known && known.status !== 'active') {
    tx.audit({ actor, action: 'mandate.approve', mandate_id: input.mandate_id, target: input.mandate_id, outcome: 'refused', reason: 'agent_revoked' });
    return refuse('agent_revoked', 'The agent asking has been revoked.');
  }
  const agentActor = { type: 'agent' as const, id: input.agent.agent_id };
  tx.audit({ actor: agentActor, action: 'mandate.request', mandate_id: input.mandate_id, target: input.mandate_id, outcome: 'succeeded', reason: 'first_contact' });
  if (!known) registerAgent(tx, { ...input.agent, via: 'first_contact' }, actor);
  insertMandate(tx, { mandate_id: input.mandate_id, agent_id: input.agent.agent_id, terms: input.requested, pending_until: tx.now, first_contact: true }, 'pending');
  setApproved(tx, input.mandate_id, input.approval);
  tx.audit({ actor, action: 'mandate.approve', mandate_id: input.mandate_id, target: input.mandate_id, outcome: 'succeeded', related: [input.approval.display_hash] });
  return { ok: true, mandate: getMandate(tx.sql, input.mandate_id, tx.now)! };
}

export function denyMandate(tx: LedgerTx, mandateId: string, actor: Actor): Outcome<{ mandate: StoredMandate }> {
  const mandate = getMandate(tx.sql, mandateId, tx.now);
  if (!mandate) return refuse('not_found', 'No such mandate.');
  if (mandate.status !== 'pending') {
    tx.audit({ actor, action: 'mandate.deny', mandate_id: mandateId, target: mandateId, outcome: 'refused', reason: 'mandate_inactive' });
    return refuse('mandate_inactive', `This mandate is ${mandate.status}, not pending.`);
  }
  tx.sql.exec(`UPDATE mandates SET status = 'denied', decided_at = ? WHERE id = ?`, iso(tx.now), mandateId);
  tx.audit({ actor, action: 'mandate.deny', mandate_id: mandateId, target: mandateId, outcome: 'succeeded' });
  return { ok: true, mandate: getMandate(tx.sql, mandateId, tx.now)! };
}

export function revokeMandate(tx: LedgerTx, mandateId: string, actor: Actor): Outcome<{ mandate: StoredMandate }> {
  const mandate = getMandate(tx.sql, mandateId, tx.now);
  if (!mandate) return refuse('not_found', 'No such mandate.');
  if (mandate.status === 'revoked') return { ok: true, mandate };
  if (mandate.status !== 'active' && mandate.status !== 'pending') {
    tx.audit({ actor, action: 'mandate.revoke', mandate_id: mandateId, target: mandateId, outcome: 'refused', reason: 'mandate_inactive' });
    return refuse('mandate_inactive', `This mandate is ${mandate.status}.`);
  }
  tx.sql.exec(`UPDATE mandates SET status = 'revoked', revoked_at = ? WHERE id = ?`, iso(tx.now), mandateId);
  tx.audit({ actor, action: 'mandate.revoke', mandate_id: mandateId, target: mandateId, outcome: 'succeeded' });
  denyMootSuccessors(tx, mandateId, actor, 'mandate_revoked');
  for (const s of mandate.approved?.scope ?? []) queueProviderEvent(tx, s.provider, 'mandate.revoked', { mandate_id: mandateId, agent_id: mandate.agent_id });
  return { ok: true, mandate: getMandate(tx.sql, mandateId, tx.now)! };
}

/**
 * §2.2: an attestation only for an active mandate of this agent, and only for
 * a provider its signed constraints allow (fail closed on any unknown type).
 */
export function authorizeAttestation(
  tx: LedgerTx,
  input: { mandate_id: string; agent_id: string; provider: string; jti: string },
): Outcome<{ mandate: StoredMandate; allowed: { services: string[]; max_per_charge: Money | null } }> {
  const actor = { type: 'agent' as const, id: input.agent_id };
  const mandate = getMandate(tx.sql, input.mandate_id, tx.now);
  if (!mandate || mandate.agent_id !== input.agent_id) return refuse('not_found', 'No such mandate.');
  const refused = (code: string, detail: string) => {
    tx.audit({ actor, action: 'attestation.issue', mandate_id: input.mandate_id, target: input.provider, outcome: 'refused', reason: code });
    return refuse(code, detail);
  };
  if (mandate.status !== 'active' || !mandate.approved) return refused('mandate_inactive', `This mandate is ${mandate.status}.`);
  if (!mandate.approved.scope.some((s) => s.provider === input.provider)) {
    return refused('provider_not_in_scope', `Provider ${input.provider} is not in this mandate's scope.`);
  }
  const verdict = evaluateForProvider(mandate.mandate_jws ? decodeJwt(mandate.mandate_jws).constraints : undefined, input.provider, tx.now);
  if (!verdict.ok) return refused('mandate_inactive', `The signed mandate allows nothing here: ${verdict.reason}.`);
  tx.audit({ actor, action: 'attestation.issue', mandate_id: input.mandate_id, target: input.provider, outcome: 'succeeded', related: [input.jti] });
  return { ok: true, mandate, allowed: { services: verdict.services, max_per_charge: verdict.max_per_charge } };
}

export type ProviderEventType = 'mandate.revoked' | 'agent.revoked' | 'charge.refunded';
export type QueuedProviderEvent = { id: number; provider_id: string; type: ProviderEventType; payload: Record<string, unknown>; attempts: number };

/** Queued in the transaction of the change; the alarm signs and delivers it until the provider acknowledges (§2.5). */
export function queueProviderEvent(tx: LedgerTx, providerId: string, type: ProviderEventType, payload: Record<string, unknown>) {
  tx.sql.exec(
    'INSERT INTO provider_events (provider_id, type, payload, attempts, next_attempt_at, created) VALUES (?, ?, ?, 0, ?, ?)',
    providerId,
    type,
    JSON.stringify(payload),
    tx.now,
    iso(tx.now),
  );
  tx.schedule('provider_events', tx.now);
}

export function dueProviderEvents(sql: SqlStorage, now: number): QueuedProviderEvent[] {
  return sql
    .exec<{ id: number; provider_id: string; type: ProviderEventType; payload: string; attempts: number }>(
      'SELECT id, provider_id, type, payload, attempts FROM provider_events WHERE next_attempt_at <= ? ORDER BY id LIMIT 50',
      now,
    )
    .toArray()
    .map((r) => ({ ...r, payload: JSON.parse(r.payload) as Record<string, unknown> }));
}

export function nextProviderEventDue(sql: SqlStorage): number | null {
  return sql.exec<{ due: number | null }>('SELECT MIN(next_attempt_at) AS due FROM provider_events').one().due;
}
