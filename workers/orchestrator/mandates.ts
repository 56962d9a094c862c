// Mandates (PROTOCOL.md §2.1): an agent asks (or its human asks on its behalf,
// extending one), the human decides on a page that shows exactly what is
// asked, and the decision is signed. State lives in the principal's ledger
// object; first-contact requests wait in D1 until a human with the typed user
// code claims them.
import type { JWK } from 'jose';
import { canonicalJson, sha256Hex } from '../lib/audit';
import { newId } from '../lib/ids';
import { signJwt } from '../lib/jws';
import { constraintsFromTerms } from '../lib/mandate-constraints';
import { ProblemError, refusalProblem } from '../lib/problem';
import { EXTENSION_DAYS, extendsBeyond, extensionEnd } from '../lib/mandate-extensions';
import type { Mandate, MandateRaise, MandateRequest } from '../lib/schemas/mandates';
import type { Money } from '../lib/schemas/money';
import { loadSigningKeys } from '../lib/signing-keys';
import { requireFreshSignIn, type Session } from '../lib/sessions';
import { timingSafeEqualText } from '../lib/passwords';
import type { MandateTerms, StoredMandate } from '../../durable-objects/principal-ledger';
import type { AgentCaller } from './agent-auth';
import { ledgerOf, orchestratorConfig, type OrchestratorBindings } from './env';
import { emailHint, principalById } from './store/principals';
import {
  addMandateRoute,
  agentByThumbprint,
  claimAgentKey,
  claimFirstContact,
  denyFirstContact,
  finishFirstContact,
  firstContact,
  firstContactsOfKey,
  insertFirstContact,
  mandateRoute,
  recordFirstContactPoll,
  releaseFirstContact,
  removeMandateRoute,
  type FirstContactRow,
} from './store/routing';

/** Device-flow timings (RFC 8628): a request waits 10 minutes for its human; agents poll every 5 s. */
export const PENDING_TTL_MS = 10 * 60 * 1000;
export const POLL_INTERVAL_S = 5;
/** Approving more than this per month needs a sign-in within the last 5 minutes (§2.0). */
export const POLICY_DEFAULT_LIMIT = 10_000;
const MAX_MANDATE_LIFETIME_MS = 366 * 24 * 3600 * 1000;

/** RFC 8628 §6.1: consonants only, no ambiguous letters, 8 characters shown as XXXX-XXXX. */
const USER_CODE_ALPHABET = 'BCDFGHJKLMNPQRSTVWXZ';

export function newUserCode(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  const chars = [...bytes].map((b) => USER_CODE_ALPHABET[b % USER_CODE_ALPHABET.length]).join('');
  return `${chars.slice(0, 4)}-${chars.slice(4)}`;
}

const normalizeUserCode = (code: string) => code.toUpperCase().replace(/[^A-Z]/g, '');
const userCodeHash = (code: string) => sha256Hex(`oap-user-code:${normalizeUserCode(code)}`);

export const approvalUrl = (env: OrchestratorBindings, mandateId: string) => `${orchestratorConfig(env).PUBLIC_BASE_URL}/mandates/${mandateId}/approval`;

function termsOf(request: MandateRequest): MandateTerms {
  return {
    description: request.description,
    scope: request.scope,
    spend_limit: request.spend_limit,
    expires_at: new Date(Date.parse(request.expires_at)).toISOString(),
    share_email: request.share_email,
    supersedes: request.supersedes ?? null,
  };
}

function checkTerms(env: OrchestratorBindings, terms: MandateTerms) {
  const known = new Set(orchestratorConfig(env).PROVIDERS.map((p) => p.id));
  const fail = (path: string, message: string) => {
    throw new ProblemError(422, 'invalid_request', `${path} ${message}`, { errors: [{ path, message }] });
  };
  terms.scope.forEach((s, i) => {
    if (!known.has(s.provider)) fail(`/scope/${i}/provider`, `${s.provider} is not a provider this orchestrator knows`);
    if (s.max_per_charge && s.max_per_charge.currency !== terms.spend_limit.currency) fail(`/scope/${i}/max_per_charge/currency`, 'must be the currency of spend_limit');
  });
  if (new Set(terms.scope.map((s) => s.provider)).size !== terms.scope.length) fail('/scope', 'names a provider twice');
  const expires = Date.parse(terms.expires_at);
  if (expires <= Date.now()) fail('/expires_at', 'must be in the future');
  if (expires > Date.now() + MAX_MANDATE_LIFETIME_MS) fail('/expires_at', 'must be within a year');
}

export function toWire(env: OrchestratorBindings, m: StoredMandate, extra: Partial<Mandate> = {}): Mandate {
  const terms = m.approved ?? m.requested;
  return {
    mandate_id: m.mandate_id,
    status: m.status,
    agent_id: m.agent_id,
    description: terms.description,
    scope: terms.scope,
    spend_limit: terms.spend_limit,
    expires_at: terms.expires_at,
    share_email: terms.share_email,
    supersedes: terms.supersedes,
    superseded_by: m.superseded_by,
    created: m.created,
    approval_url: approvalUrl(env, m.mandate_id),
    ...(m.status === 'pending' ? { expires_in: Math.max(0, Math.ceil((m.pending_until - Date.now()) / 1000)), interval: POLL_INTERVAL_S } : {}),
    decided_at: m.decided_at,
    approver_email_hint: m.approver_email_hint,
    display_hash: m.display_hash,
    mandate_jws: m.mandate_jws,
    revoked_at: m.revoked_at,
    ...extra,
  };
}

function firstContactStatus(row: FirstContactRow): Mandate['status'] {
  if (row.status === 'denied') return 'denied';
  if (row.status === 'approved') return 'active';
  return row.expires_at <= Date.now() ? 'expired' : 'pending';
}

function firstContactWire(env: OrchestratorBindings, row: FirstContactRow, extra: Partial<Mandate> = {}): Mandate {
  const terms = JSON.parse(row.request) as MandateTerms;
  const status = firstContactStatus(row);
  return {
    mandate_id: row.mandate_id,
    status,
    agent_id: null,
    description: terms.description,
    scope: terms.scope,
    spend_limit: terms.spend_limit,
    expires_at: terms.expires_at,
    share_email: terms.share_email,
    supersedes: null,
    superseded_by: null,
    created: row.created_at,
    approval_url: approvalUrl(env, row.mandate_id),
    ...(status === 'pending' ? { expires_in: Math.max(0, Math.ceil((row.expires_at - Date.now()) / 1000)), interval: POLL_INTERVAL_S } : {}),
    decided_at: row.decided_at,
    approver_email_hint: null,
    display_hash: null,
    mandate_jws: null,
    revoked_at: null,
    ...extra,
  };
}

/** POST /v1/mandates: a registered agent asks its principal, or an unknown key makes first contact. */
export async function requestMandate(env: OrchestratorBindings, caller: AgentCaller, request: MandateRequest, originAddress: string | null): Promise<Mandate> {
  const terms = termsOf(request);
  checkTerms(env, terms);
  const mandateId = newId('mdt');
  const userCode = newUserCode();
  if (caller.kind === 'unregistered_key') {
    if (!request.agent) throw new ProblemError(422, 'invalid_request', 'A first request from an unregistered key must name the agent: agent {name, public_jwk}.');
    if (request.agent.public_jwk.x !== (caller.jwk as { x?: string }).x) throw new ProblemError(401, 'invalid_signature', 'The DPoP proof is not signed by agent.public_jwk.');
    if (request.supersedes) throw new ProblemError(422, 'invalid_request', 'A first-contact request cannot supersede a mandate.');
    const now = Date.now();
    await insertFirstContact(env.DB, {
      mandate_id: mandateId,
      jkt: caller.jkt,
      public_jwk: JSON.stringify(caller.jwk),
      agent_name: request.agent.name,
      request: JSON.stringify(terms),
      user_code_hash: userCodeHash(userCode),
      origin_address: originAddress,
      created_at: new Date(now).toISOString(),
      expires_at: now + PENDING_TTL_MS,
    });
    return firstContactWire(env, (await firstContact(env.DB, mandateId))!, { user_code: userCode });
  }
  if (request.agent && request.agent.public_jwk.x !== (caller.jwk as { x?: string }).x) {
    throw new ProblemError(422, 'invalid_request', 'agent.public_jwk is not the key that signed this request.');
  }
  // Routed ahead, so that a mandate the ledger creates can always be found; a refused one leaves no route behind.
  await addMandateRoute(env.DB, { mandate_id: mandateId, principal_id: caller.principal_id, requester_jkt: caller.jkt });
  const created = await ledgerOf(env, caller.principal_id).createMandate(caller.principal_id, {
    mandate_id: mandateId,
    agent_id: caller.agent_id,
    terms,
    pending_until: Date.now() + PENDING_TTL_MS,
    first_contact: false,
  });
  if (!created.ok) {
    await removeMandateRoute(env.DB, mandateId);
    throw refusalProblem(created, 422);
  }
  return toWire(env, created.mandate, { user_code: userCode });
}

/** GET /v1/mandates/{id} by an agent: only the mandates it requested or its human asked for on its behalf; others do not exist (404). */
export async function pollMandateAsAgent(env: OrchestratorBindings, caller: AgentCaller, mandateId: string): Promise<Mandate> {
  const route = await mandateRoute(env.DB, mandateId);
  if (!route || route.requester_jkt !== caller.jkt) throw new ProblemError(404, 'not_found', 'No such mandate.');
  if (route.principal_id === null) {
    const row = (await firstContact(env.DB, mandateId))!;
    if (firstContactStatus(row) === 'pending' && !(await recordFirstContactPoll(env.DB, mandateId, POLL_INTERVAL_S))) {
      throw new ProblemError(429, 'slow_down', `Poll at most every ${POLL_INTERVAL_S} seconds.`, { interval: POLL_INTERVAL_S }, { 'Retry-After': String(POLL_INTERVAL_S) });
    }
    return firstContactWire(env, row);
  }
  const key = await agentByThumbprint(env.DB, caller.jkt);
  if (!key) throw new ProblemError(404, 'not_found', 'No such mandate.');
  const result = await ledgerOf(env, route.principal_id).pollMandate(route.principal_id, mandateId, key.agent_id, POLL_INTERVAL_S);
  if (!result.ok) {
    if (result.code === 'slow_down') throw new ProblemError(429, 'slow_down', result.detail, { interval: POLL_INTERVAL_S }, { 'Retry-After': String(POLL_INTERVAL_S) });
    throw refusalProblem(result);
  }
  return { ...toWire(env, result.mandate), spent: { amount: result.spent, currency: result.mandate.requested.spend_limit.currency } };
}

export type MandateView =
  | { kind: 'owned'; principal_id: string; mandate: StoredMandate }
  | { kind: 'first_contact'; row: FirstContactRow };

/**
 * A principal's view of a mandate: its own, or a first-contact request still
 * unclaimed (only shown once the human has typed its user code).
 */
export async function findMandateForPrincipal(env: OrchestratorBindings, principalId: string, mandateId: string): Promise<MandateView> {
  const route = await mandateRoute(env.DB, mandateId);
  if (route?.principal_id === principalId) {
    const mandate = await ledgerOf(env, principalId).getMandate(mandateId);
    if (mandate) return { kind: 'owned', principal_id: principalId, mandate };
  }
  if (route && route.principal_id === null) {
    const row = await firstContact(env.DB, mandateId);
    if (row && (row.status === 'pending' || (row.status === 'approving' && row.decided_by === principalId))) return { kind: 'first_contact', row };
  }
  throw new ProblemError(404, 'not_found', 'No such mandate.');
}

export function checkUserCode(view: MandateView, userCode: string | undefined): void {
  if (view.kind !== 'first_contact') return;
  if (!userCode || !timingSafeEqualText(userCodeHash(userCode), view.row.user_code_hash)) {
    throw new ProblemError(403, 'invalid_user_code', 'The code does not match the one the agent shows.');
  }
}

export type DisplayDocument = {
  version: 1;
  mandate_id: string;
  agent: { agent_id: string | null; name: string; name_verified: boolean; key_thumbprint: string };
  request_origin: string | null;
  description: string;
  providers: { provider: string; provider_name: string; services: string[]; max_per_charge: Money | null }[];
  spend_limit: Money & { period: 'month' };
  expires_at: string;
  share_email: boolean;
  email_shared: string | null;
  supersedes: string | null;
  approver: string;
};

/** The canonical document the approval page renders; its JCS SHA-256 is the display_hash (§2.1). */
export async function displayDocument(env: OrchestratorBindings, principalId: string, view: MandateView): Promise<{ document: DisplayDocument; hash: string }> {
  const principal = (await principalById(env.DB, principalId))!;
  const providers = orchestratorConfig(env).PROVIDERS;
  let agent: DisplayDocument['agent'];
  let terms: MandateTerms;
  let origin: string | null = null;
  if (view.kind === 'owned') {
    const stored = (await ledgerOf(env, principalId).getAgent(view.mandate.agent_id))!;
    agent = { agent_id: stored.agent_id, name: stored.name, name_verified: stored.registered_via === 'principal', key_thumbprint: stored.key_thumbprint };
    terms = view.mandate.requested;
  } else {
    agent = { agent_id: null, name: view.row.agent_name, name_verified: false, key_thumbprint: view.row.jkt };
    terms = JSON.parse(view.row.request) as MandateTerms;
    origin = view.row.origin_address;
  }
  const document: DisplayDocument = {
    version: 1,
    mandate_id: view.kind === 'owned' ? view.mandate.mandate_id : view.row.mandate_id,
    agent,
    request_origin: origin,
    description: terms.description,
    providers: terms.scope.map((s) => ({
      provider: s.provider,
      provider_name: providers.find((p) => p.id === s.provider)?.name ?? s.provider,
      services: s.services,
      max_per_charge: s.max_per_charge ?? null,
    })),
    spend_limit: terms.spend_limit,
    expires_at: terms.expires_at,
    share_email: terms.share_email,
    email_shared: terms.share_email ? principal.email : null,
    supersedes: terms.supersedes,
    approver: principal.email,
  };
  return { document, hash: sha256Hex(canonicalJson(document)) };
}

export type ApprovalInput = {
  user_code?: string | undefined;
  spend_limit?: (Money & { period: 'month' }) | undefined;
  max_per_charge?: Record<string, Money> | undefined;
  display_hash?: string | undefined;
};

/** The human may lower limits, never raise them (raising is a new request). */
function approvedTerms(requested: MandateTerms, input: ApprovalInput): MandateTerms {
  const spend = input.spend_limit ?? requested.spend_limit;
  if (spend.currency !== requested.spend_limit.currency || spend.amount > requested.spend_limit.amount) {
    throw new ProblemError(422, 'invalid_request', 'spend_limit may only be lowered, in the currency asked for.', { errors: [{ path: '/spend_limit', message: 'higher than requested' }] });
  }
  const scope = requested.scope.map((s) => {
    const lowered = input.max_per_charge?.[s.provider];
    if (!lowered) return s;
    if (lowered.currency !== spend.currency || (s.max_per_charge && lowered.amount > s.max_per_charge.amount)) {
      throw new ProblemError(422, 'invalid_request', `max_per_charge for ${s.provider} may only be lowered.`, {
        errors: [{ path: `/max_per_charge/${s.provider}`, message: 'higher than requested' }],
      });
    }
    return { ...s, max_per_charge: lowered };
  });
  for (const provider of Object.keys(input.max_per_charge ?? {})) {
    if (!requested.scope.some((s) => s.provider === provider)) {
      throw new ProblemError(422, 'invalid_request', `${provider} is not in this mandate's scope.`, { errors: [{ path: `/max_per_charge/${provider}`, message: 'not in scope' }] });
    }
  }
  return { ...requested, scope, spend_limit: spend };
}

async function signMandate(env: OrchestratorBindings, input: { principalId: string; mandateId: string; agentId: string; jkt: string; terms: MandateTerms; displayHash: string; approvedAt: string }) {
  const config = orchestratorConfig(env);
  return signJwt(await loadSigningKeys(config.SIGNING_KEYS), 'oap-mandate+jwt', {
    iss: config.PUBLIC_BASE_URL,
    sub: input.principalId,
    jti: input.mandateId,
    iat: Math.floor(Date.parse(input.approvedAt) / 1000),
    exp: Math.floor(Date.parse(input.terms.expires_at) / 1000),
    mandate_id: input.mandateId,
    agent_id: input.agentId,
    cnf: { jkt: input.jkt },
    approved_at: input.approvedAt,
    display_hash: input.displayHash,
    description: input.terms.description,
    supersedes: input.terms.supersedes,
    share_email: input.terms.share_email,
    constraints: constraintsFromTerms(input.terms),
  });
}

/** Whether `after` lets its agent spend more than `before` did: a higher limit, one fewer, more providers or services. */
function widens(before: MandateTerms, after: MandateTerms): boolean {
  const higher = (was: Money | null, now: Money | null) => was !== null && (now === null || now.currency !== was.currency || now.amount > was.amount);
  if (higher(before.spend_limit, after.spend_limit)) return true;
  return after.scope.some((s) => {
    const was = before.scope.find((b) => b.provider === s.provider);
    return !was || s.services.some((service) => !was.services.includes(service)) || higher(was.max_per_charge ?? null, s.max_per_charge ?? null);
  });
}

/** POST /v1/mandates/{id}/approve from a principal session (CSRF already checked). */
export async function approveMandate(env: OrchestratorBindings, session: Session, mandateId: string, input: ApprovalInput): Promise<Mandate> {
  const principalId = session.subject_id;
  const principal = (await principalById(env.DB, principalId))!;
  const view = await findMandateForPrincipal(env, principalId, mandateId);
  const ledger = ledgerOf(env, principalId);
  try {
    checkUserCode(view, input.user_code);
  } catch (error) {
    await ledger.recordRefusal(principalId, { actor: { type: 'principal', id: principalId }, action: 'mandate.approve', reason: 'invalid_user_code', mandate_id: mandateId });
    throw error;
  }
  const { document: shown, hash } = await displayDocument(env, principalId, view);
  const displayJson = canonicalJson(shown);
  if (input.display_hash !== undefined && input.display_hash !== hash) {
    throw new ProblemError(409, 'display_changed', 'What this mandate shows has changed since the page was rendered; review it again.', { display_hash: hash });
  }
  const requested = view.kind === 'owned' ? view.mandate.requested : (JSON.parse(view.row.request) as MandateTerms);
  const terms = approvedTerms(requested, input);
  // §Conventions: approving above the policy default (in dollars; in a currency it cannot be compared with, always),
  // or raising what a mandate it supersedes allowed, needs a recent sign-in.
  const predecessor = view.kind === 'owned' && terms.supersedes ? ((await ledger.getMandate(terms.supersedes))?.approved ?? null) : null;
  if (terms.spend_limit.currency !== 'usd' || terms.spend_limit.amount > POLICY_DEFAULT_LIMIT || (predecessor && widens(predecessor, terms))) requireFreshSignIn(session);
  const approvedAt = new Date().toISOString();

  if (view.kind === 'owned') {
    // The agent as the display document read it from the ledger, a moment ago.
    const mandateJws = await signMandate(env, { principalId, mandateId, agentId: shown.agent.agent_id!, jkt: shown.agent.key_thumbprint, terms, displayHash: hash, approvedAt });
    const result = await ledger.approveMandate(principalId, mandateId, {
      approved: terms,
      display_hash: hash,
      display_document: displayJson,
      mandate_jws: mandateJws,
      approver_email_hint: emailHint(principal.email),
      decided_at: approvedAt,
    });
    if (!result.ok) throw refusalProblem(result, 409);
    return toWire(env, result.mandate);
  }

  const row = view.row;
  // Checked before the claim: a refusal must leave the request pending, for its rightful human to decide.
  const holder = await agentByThumbprint(env.DB, row.jkt);
  if (holder && holder.principal_id !== principalId) throw keyOfAnotherAgent();
  if (!(await claimFirstContact(env.DB, mandateId, principalId))) throw new ProblemError(409, 'mandate_inactive', 'This request was already decided or has expired.');
  // The key may already be this principal's agent: an earlier request of the same key was approved, or this is a retry.
  const agentId = holder?.agent_id ?? (await claimKeyForNewAgent(env.DB, row.jkt, principalId));
  if (!agentId) {
    await releaseFirstContact(env.DB, mandateId, principalId);
    throw keyOfAnotherAgent();
  }
  const mandateJws = await signMandate(env, { principalId, mandateId, agentId, jkt: row.jkt, terms, displayHash: hash, approvedAt });
  const result = await ledger.approveFirstContact(principalId, {
    agent: { agent_id: agentId, name: row.agent_name, public_jwk: JSON.parse(row.public_jwk) as JWK, key_thumbprint: row.jkt },
    mandate_id: mandateId,
    requested,
    approval: { approved: terms, display_hash: hash, display_document: displayJson, mandate_jws: mandateJws, approver_email_hint: emailHint(principal.email), decided_at: approvedAt },
  });
  if (!result.ok) {
    await releaseFirstContact(env.DB, mandateId, principalId);
    throw refusalProblem(result, 409);
  }
  await finishFirstContact(env.DB, mandateId, principalId, 'approved');
  return toWire(env, result.mandate);
}

const keyOfAnotherAgent = () => new ProblemError(409, 'invalid_request', 'This key already belongs to another agent.');

/**
 * Routes a first-contact key to a new agent of the approver (§2.1: one key, one
 * agent). Two approvals of the same key can race here: the loser takes the
 * winner's agent if it is the same principal's, and null means another's.
 */
async function claimKeyForNewAgent(db: D1Database, jkt: string, principalId: string): Promise<string | null> {
  const agentId = newId('agt');
  if (await claimAgentKey(db, { jkt, agent_id: agentId, principal_id: principalId })) return agentId;
  const winner = await agentByThumbprint(db, jkt);
  return winner?.principal_id === principalId ? winner.agent_id : null;
}

export async function denyMandate(env: OrchestratorBindings, session: Session, mandateId: string, userCode: string | undefined): Promise<Mandate> {
  const principalId = session.subject_id;
  const view = await findMandateForPrincipal(env, principalId, mandateId);
  if (view.kind === 'owned') {
    const result = await ledgerOf(env, principalId).denyMandate(principalId, mandateId);
    if (!result.ok) throw refusalProblem(result, 409);
    return toWire(env, result.mandate);
  }
  checkUserCode(view, userCode);
  if (!(await denyFirstContact(env.DB, mandateId, principalId))) throw new ProblemError(409, 'mandate_inactive', 'This request was already decided or has expired.');
  await ledgerOf(env, principalId).appendAuditEvent(principalId, { actor: { type: 'principal', id: principalId }, action: 'mandate.deny', outcome: 'succeeded', mandate_id: mandateId, target: mandateId, reason: 'first_contact' });
  return firstContactWire(env, (await firstContact(env.DB, mandateId))!);
}

export async function revokeMandate(env: OrchestratorBindings, principalId: string, mandateId: string): Promise<Mandate> {
  const view = await findMandateForPrincipal(env, principalId, mandateId);
  if (view.kind !== 'owned') throw new ProblemError(404, 'not_found', 'No such mandate.');
  const result = await ledgerOf(env, principalId).revokeMandate(principalId, mandateId);
  if (!result.ok) throw refusalProblem(result, 409);
  return toWire(env, result.mandate);
}

/**
 * What the human asks for from the dashboard, for an active mandate: a request, on behalf of the mandate's agent, for
 * the terms approved until now changed by `change` (an extension, a raised limit), superseding it (PROTOCOL.md §2.1: a
 * later end or a raised limit is a new approval, never an edit). The human then approves it on the approval page like
 * any request (the same display, the same re-authentication above the policy ceiling); until then the mandate stays
 * in force. Its agent can read the request (it is routed to the agent's key) and, once approved, finds it as its
 * mandate's `superseded_by`. Recurring plans bought under the mandate renew under it. `reuseWaiting`: a request still
 * waiting to supersede the mandate answers this one if it asks the same terms (a form sent twice), and this one is
 * refused (409) if it asks others: the human decides the waiting one first. `change` throws when it changes nothing.
 */
async function supersedeForPrincipal(
  env: OrchestratorBindings,
  principalId: string,
  mandateId: string,
  change: (approved: MandateTerms, now: number) => Omit<MandateTerms, 'supersedes'>,
  options: { reuseWaiting?: boolean },
): Promise<Mandate> {
  const view = await findMandateForPrincipal(env, principalId, mandateId);
  if (view.kind !== 'owned') throw new ProblemError(404, 'not_found', 'No such mandate.');
  const { mandate } = view;
  const inactive = () => new ProblemError(409, 'mandate_inactive', `This mandate is ${mandate.status === 'active' ? 'no longer active' : mandate.status}: only an active mandate can be changed.`);
  if (mandate.status !== 'active' || !mandate.approved) throw inactive();
  const terms: MandateTerms = { ...change(mandate.approved, Date.now()), supersedes: mandate.mandate_id };
  checkTerms(env, terms);
  const ledger = ledgerOf(env, principalId);
  const agent = (await ledger.getAgent(mandate.agent_id))!;
  const successorId = newId('mdt');
  await addMandateRoute(env.DB, { mandate_id: successorId, principal_id: principalId, requester_jkt: agent.key_thumbprint });
  const created = await ledger.createMandate(
    principalId,
    { mandate_id: successorId, agent_id: mandate.agent_id, terms, pending_until: Date.now() + PENDING_TTL_MS, first_contact: false },
    { type: 'principal', id: principalId },
    options,
  );
  // Refused (revoked or superseded since it was read, another request waiting), or answered by the same request
  // already waiting: no route of its own.
  if (!created.ok || created.reused) await removeMandateRoute(env.DB, successorId);
  if (!created.ok && 'waiting' in created && created.waiting) {
    throw new ProblemError(409, 'invalid_request', 'Another request to change this mandate waits for your decision: decide it first.', { waiting: created.waiting });
  }
  if (!created.ok) throw inactive();
  return toWire(env, created.mandate);
}

/** The dashboard's Extend: the same terms until `days` from now, a day at least past the mandate's end. */
export async function extendMandateForPrincipal(env: OrchestratorBindings, principalId: string, mandateId: string, days: number, options: { reuseWaiting?: boolean } = {}): Promise<Mandate> {
  if (!(EXTENSION_DAYS as readonly number[]).includes(days)) {
    throw new ProblemError(422, 'invalid_request', `days must be one of ${EXTENSION_DAYS.join(', ')}.`, { errors: [{ path: '/days', message: 'not an offered length' }] });
  }
  return supersedeForPrincipal(
    env,
    principalId,
    mandateId,
    (approved, now) => {
      if (!extendsBeyond(extensionEnd(days, now), approved.expires_at)) {
        throw new ProblemError(422, 'invalid_request', `${days} days from now does not end a day past this mandate's end (${approved.expires_at}).`, {
          errors: [{ path: '/days', message: 'does not end a day past the mandate' }],
        });
      }
      return { ...approved, expires_at: new Date(extensionEnd(days, now)).toISOString() };
    },
    options,
  );
}

/**
 * The human raises a mandate's limits (the step_up_url of a charge the mandate declined leads here): the same terms
 * with each limit named set to its new amount, none lower than approved until now (lowering is the approval's), one
 * at least higher. A per-charge limit is raised only where there is one: there is no higher than none.
 */
export async function raiseMandateForPrincipal(env: OrchestratorBindings, principalId: string, mandateId: string, raise: MandateRaise, options: { reuseWaiting?: boolean } = {}): Promise<Mandate> {
  return supersedeForPrincipal(
    env,
    principalId,
    mandateId,
    (approved) => {
      const refused = (path: string, message: string) => new ProblemError(422, 'invalid_request', `${message}.`, { errors: [{ path, message }] });
      let higher = false;
      const raised = (current: Money, asked: Money | undefined, path: string): Money => {
        if (!asked) return current;
        if (asked.currency !== current.currency || asked.amount < current.amount) throw refused(path, `not lower than ${current.amount} ${current.currency}, in ${current.currency}`);
        higher ||= asked.amount > current.amount;
        return { amount: asked.amount, currency: current.currency };
      };
      const spend_limit = { ...raised(approved.spend_limit, raise.spend_limit, '/spend_limit'), period: 'month' as const };
      for (const provider of Object.keys(raise.max_per_charge ?? {})) {
        if (!approved.scope.some((s) => s.provider === provider && s.max_per_charge)) throw refused(`/max_per_charge/${provider}`, `no per-charge limit at ${provider} to raise`);
      }
      const scope = approved.scope.map((s) => (s.max_per_charge ? { ...s, max_per_charge: raised(s.max_per_charge, raise.max_per_charge?.[s.provider], `/max_per_charge/${s.provider}`) } : s));
      if (!higher) throw refused('', 'a raise makes one limit at least higher than approved');
      return { ...approved, spend_limit, scope };
    },
    options,
  );
}

export async function listMandatesOfPrincipal(env: OrchestratorBindings, principalId: string): Promise<Mandate[]> {
  return (await ledgerOf(env, principalId).listMandates()).map((m) => toWire(env, m));
}

/** GET /v1/mandates by an agent: its own (what it requested, and extensions its human asked for); an unregistered key's are its first-contact requests (§2.4). */
export async function listMandatesOfAgent(env: OrchestratorBindings, caller: AgentCaller): Promise<Mandate[]> {
  if (caller.kind === 'unregistered_key') return (await firstContactsOfKey(env.DB, caller.jkt)).map((row) => firstContactWire(env, row));
  return (await ledgerOf(env, caller.principal_id).listMandates(caller.agent_id)).map((m) => toWire(env, m));
}
