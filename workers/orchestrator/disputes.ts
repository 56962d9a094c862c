// Disputes (PROTOCOL.md §5): the principal disputes a captured charge; the
// orchestrator gathers the evidence into one bundle, the adjudicator decides
// from it alone, and the verdict, its findings and the bundle are kept.
import type { JSONWebKeySet } from 'jose';
import { adjudicate, EVIDENCE_FORMAT, type EvidenceBundle } from '../lib/adjudicator';
import type { SignedHead } from '../lib/audit-heads';
import type { AuditEvent } from '../lib/audit';
import { auditEvents } from '../lib/audit-trail';
import { newId } from '../lib/ids';
import { ProblemError, refusalProblem, type ProblemCode } from '../lib/problem';
import { signJwt } from '../lib/jws';
import { loadSigningKeys } from '../lib/signing-keys';
import { pairwiseSubject } from './store/pairwise';
import type { DisputeRecord, DisputeSummary } from '../../durable-objects/ledger/disputes';
import { chargeRoute } from './charges';
import { ledgerOf, type OrchestratorBindings, orchestratorConfig, providerBinding, providerKeys, providerOf } from './env';

/** How long a principal waits before retrying a dispute the provider's keys could not be fetched for. */
const KEYS_RETRY_AFTER_S = 30;

async function providerJwks(env: OrchestratorBindings, providerId: string): Promise<EvidenceBundle['provider']> {
  const provider = providerOf(env, providerId);
  if (!provider) return { id: providerId, issuer: '', url: '', jwks: { keys: [] } };
  // Without its keys the provider's receipt cannot be checked, and a verdict would blame the provider
  // for our failed fetch, for good: nothing is decided, and the principal is told to retry.
  const unavailable = () =>
    new ProblemError(503, 'internal_error', `The published keys of provider ${provider.id} could not be fetched, so the dispute was not decided; try again later.`, {}, { 'Retry-After': String(KEYS_RETRY_AFTER_S) });
  // The keys the charge path verifies with (workers/lib/jwks-cache.ts), fetched afresh: the bundle holds the JWKS in force now.
  const keys = providerKeys(env, provider);
  try {
    await keys.reload();
  } catch {
    throw unavailable();
  }
  return { id: provider.id, issuer: provider.issuer, url: provider.url, jwks: keys.jwks()! };
}

/** The provider's events for the charge (§5: both parties'), asked with a token the orchestrator signs. */
async function providerEvents(env: OrchestratorBindings, principalId: string, providerId: string, chargeId: string): Promise<EvidenceBundle['audit']['provider']> {
  const config = orchestratorConfig(env);
  const provider = providerOf(env, providerId);
  if (!provider) return null;
  const path = `/v1/charges/${chargeId}/audit`;
  const now = Math.floor(Date.now() / 1000);
  const token = await signJwt(await loadSigningKeys(config.SIGNING_KEYS), 'oap-orchestrator+jwt', {
    iss: config.PUBLIC_BASE_URL,
    aud: provider.issuer,
    iat: now,
    exp: now + 60,
    jti: crypto.randomUUID(),
    htm: 'GET',
    htu: `${provider.url}${path}`,
  });
  const binding = providerBinding(env, provider);
  try {
    const sub = await pairwiseSubject(env.DB, principalId, provider.id);
    const res = await (binding ?? globalThis).fetch(`${provider.url}${path}?sub=${encodeURIComponent(sub)}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(10_000) });
    if (!res.ok) return null;
    const body = (await res.json()) as NonNullable<EvidenceBundle['audit']['provider']>;
    return { events: body.events, signed_head: body.signed_head, ...(Array.isArray(body.heads) ? { heads: body.heads } : {}) };
  } catch {
    return null;
  }
}

/**
 * The chain proof of the principal's side (§5): for each event about the charge, the run of the
 * principal's chain from it through the first head the orchestrator signed after it. Heads are signed
 * within a minute of the events they cover, so each run is short however old the charge, and a reader
 * relinks each by prev_hash to its signed head: no event in a run can be edited, dropped or added
 * without the orchestrator's key. A head not yet signed by the alarm is signed now.
 */
async function chainProof(env: OrchestratorBindings, principalId: string, chargeId: string, mandateId: string): Promise<EvidenceBundle['audit']['orchestrator']> {
  const ledger = ledgerOf(env, principalId);
  const relevant: AuditEvent[] = [];
  for await (const event of auditEvents(ledger, env.DB, principalId, 0, { mandateId })) {
    if (event.target === chargeId || event.related.includes(chargeId)) relevant.push(event);
  }
  const events: AuditEvent[] = [];
  const heads: SignedHead[] = [];
  for (const event of relevant) {
    if (heads.length && event.seq <= heads.at(-1)!.seq) continue; // in the run already taken
    const head = await ledger.headCovering(event.seq);
    if (!head) return { events: relevant, signed_head: null, heads: [] };
    for await (const covered of auditEvents(ledger, env.DB, principalId, event.seq - 1)) {
      if (covered.seq > head.seq) break;
      events.push(covered);
    }
    heads.push(head);
  }
  return { events, signed_head: heads.at(-1) ?? null, heads };
}

/** Everything the verdict may rest on, from stored state and published keys; null for a charge that is not an agent's. */
export async function gatherEvidence(env: OrchestratorBindings, principalId: string, chargeId: string): Promise<EvidenceBundle | null> {
  const config = orchestratorConfig(env);
  const ledger = ledgerOf(env, principalId);
  const hold = await ledger.getCharge(chargeId);
  if (!hold || !hold.mandate_id || !hold.agent_id || !hold.provider) return null;
  const [mandate, agent, keys, provider] = await Promise.all([ledger.getMandate(hold.mandate_id), ledger.getAgent(hold.agent_id), loadSigningKeys(config.SIGNING_KEYS), providerJwks(env, hold.provider)]);
  const recorded = hold.evidence
    ? (JSON.parse(hold.evidence) as { agent_request?: EvidenceBundle['agent_request']; constraint_results?: { type: string; pass: boolean }[]; mandate_status_at_decision?: string; token_jti?: string })
    : {};
  const [trail, providerTrail] = await Promise.all([chainProof(env, principalId, chargeId, hold.mandate_id), providerEvents(env, principalId, hold.provider, chargeId)]);
  return {
    format: EVIDENCE_FORMAT,
    charge: {
      charge_id: hold.id,
      status: hold.status,
      amount: hold.amount,
      currency: hold.currency,
      provider: hold.provider,
      service: hold.service ?? '',
      plan: hold.plan ?? '',
      mandate_id: hold.mandate_id,
      agent_id: hold.agent_id,
      authorized_at: new Date(hold.created).toISOString(),
      receipt: hold.receipt,
      resource_ref: hold.resource_ref,
    },
    decision: recorded.constraint_results
      ? { mandate_status_at_decision: recorded.mandate_status_at_decision ?? 'unknown', constraint_results: recorded.constraint_results, token_jti: recorded.token_jti ?? null }
      : null,
    agent_request: recorded.agent_request ?? null,
    agent: { agent_id: hold.agent_id, public_jwk: agent?.public_jwk ?? {}, key_thumbprint: agent?.key_thumbprint ?? '', revoked_at: agent?.revoked_at ?? null },
    mandate: { mandate_id: hold.mandate_id, mandate_jws: mandate?.mandate_jws ?? null, display_document: mandate?.display_document ?? null, revoked_at: mandate?.revoked_at ?? null },
    orchestrator: { issuer: config.PUBLIC_BASE_URL, jwks: keys.publicJwks as JSONWebKeySet },
    provider,
    audit: { orchestrator: trail, provider: providerTrail },
  };
}

export type DisputeWire = {
  dispute_id: string;
  charge_id: string;
  reason: string;
  verdict: string;
  failing_party: string | null;
  findings: { check: string; result: string; evidence: string }[];
  adjudicator: string;
  evidence_url: string;
  created: string;
};

export function toDisputeWire(env: OrchestratorBindings, d: DisputeSummary): DisputeWire {
  return {
    dispute_id: d.id,
    charge_id: d.charge_id,
    reason: d.reason,
    verdict: d.verdict,
    failing_party: d.failing_party,
    findings: JSON.parse(d.findings),
    adjudicator: d.adjudicator,
    evidence_url: `${orchestratorConfig(env).PUBLIC_BASE_URL}/v1/disputes/${d.id}/evidence`,
    created: d.created,
  };
}

export async function openDispute(env: OrchestratorBindings, principalId: string, input: { charge_id: string; reason: string }): Promise<DisputeWire> {
  const ledger = ledgerOf(env, principalId);
  // §4: a refusal is an event, in the caller's own chain; another principal's charge is refused as
  // unknown and its owner's ledger is not touched, so neither learns of the other.
  const refused = async (status: number, code: ProblemCode, detail: string) => {
    await ledger.recordRefusal(principalId, { actor: { type: 'principal', id: principalId }, action: 'dispute.open', reason: code, related: [input.charge_id] });
    return new ProblemError(status, code, detail);
  };
  const route = await chargeRoute(env, input.charge_id);
  if (!route || route.principal_id !== principalId) throw await refused(404, 'not_found', 'No such charge.');
  if (await ledger.disputeOfCharge(input.charge_id)) throw await refused(409, 'invalid_request', 'This charge has been disputed already.');
  const bundle = await gatherEvidence(env, principalId, input.charge_id);
  if (!bundle) throw await refused(404, 'not_found', 'No such charge.');
  const decision = await adjudicate(bundle);
  const result = await ledger.recordDispute(principalId, {
    id: newId('dsp'),
    charge_id: input.charge_id,
    reason: input.reason,
    verdict: decision.verdict,
    failing_party: decision.failing_party,
    findings: JSON.stringify(decision.findings),
    adjudicator: decision.adjudicator,
    evidence: JSON.stringify(bundle),
  });
  if (!result.ok) throw refusalProblem(result, result.code === 'not_found' ? 404 : 409);
  return toDisputeWire(env, result.dispute as DisputeRecord);
}
