// Attestations (PROTOCOL.md §2.2): the orchestrator vouches to one provider
// that this agent acts for this principal under this mandate, in the shape
// of an ID-JAG (typ oauth-id-jag+jwt), bound to the agent's key, single use.
import { newId } from '../lib/ids';
import { signJwt } from '../lib/jws';
import { ProblemError, refusalProblem } from '../lib/problem';
import type { MandateDetail } from '../lib/schemas/mandates';
import { loadSigningKeys } from '../lib/signing-keys';
import type { AgentCaller } from './agent-auth';
import { ledgerOf, orchestratorConfig, type OrchestratorBindings } from './env';
import { pairwiseSubject } from './store/pairwise';
import { principalById } from './store/principals';
import { mandateRoute } from './store/routing';

export const ATTESTATION_LIFETIME_S = 300;

export async function issueAttestation(env: OrchestratorBindings, caller: AgentCaller, input: { mandate_id: string; provider: string }) {
  if (caller.kind !== 'agent') throw new ProblemError(401, 'invalid_signature', 'Only a registered agent gets attestations.');
  const route = await mandateRoute(env.DB, input.mandate_id);
  if (!route || route.principal_id !== caller.principal_id) throw new ProblemError(404, 'not_found', 'No such mandate.');
  const config = orchestratorConfig(env);
  const provider = config.PROVIDERS.find((p) => p.id === input.provider);
  const jti = newId('req');
  const ledger = ledgerOf(env, caller.principal_id);
  const decision = await ledger.authorizeAttestation(caller.principal_id, { mandate_id: input.mandate_id, agent_id: caller.agent_id, provider: input.provider, jti });
  if (!decision.ok) throw refusalProblem(decision);
  if (!provider) throw new ProblemError(403, 'provider_not_in_scope', `${input.provider} is not a provider this orchestrator knows.`);
  // What is attested comes from the signed mandate's constraints (checked in the ledger).
  const terms = decision.mandate.approved!;
  const verdict = decision.allowed;
  const detail: MandateDetail = {
    type: 'oap_mandate',
    mandate_id: input.mandate_id,
    services: verdict.services,
    max_per_charge: verdict.max_per_charge,
    spend_limit: terms.spend_limit,
    expires_at: terms.expires_at,
  };
  const principal = (await principalById(env.DB, caller.principal_id))!;
  const now = Math.floor(Date.now() / 1000);
  const attestation = await signJwt(await loadSigningKeys(config.SIGNING_KEYS), 'oauth-id-jag+jwt', {
    iss: config.PUBLIC_BASE_URL,
    aud: provider.issuer,
    sub: await pairwiseSubject(env.DB, caller.principal_id, provider.id),
    client_id: caller.agent_id,
    act: { sub: caller.agent_id },
    cnf: { jkt: caller.jkt },
    authorization_details: [detail],
    ...(terms.share_email ? { email: principal.email, email_verified: principal.email_verified === 1 } : {}),
    jti,
    iat: now,
    exp: now + ATTESTATION_LIFETIME_S,
  });
  return { attestation, expires_in: ATTESTATION_LIFETIME_S };
}
