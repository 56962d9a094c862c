// Agents as first-class identities (PROTOCOL.md §2.1): registered by their
// principal with a DPoP proof signed by the agent key itself, so nobody
// registers a key they do not hold.
import type { JWK } from 'jose';
import { DpopRefused, verifyDpopProof } from '../lib/dpop';
import { newId } from '../lib/ids';
import { jwkThumbprint } from '../lib/jws';
import { ProblemError, refusalProblem } from '../lib/problem';
import type { StoredAgent } from '../../durable-objects/principal-ledger';
import { ledgerOf, orchestratorConfig, type OrchestratorBindings } from './env';
import { claimAgentKey, releaseAgentKey } from './store/routing';

export type AgentWire = Omit<StoredAgent, 'public_jwk'> & { public_jwk: { kty: 'OKP'; crv: 'Ed25519'; x: string } };

export const toWire = (a: StoredAgent): AgentWire => ({ ...a, public_jwk: { kty: 'OKP', crv: 'Ed25519', x: String(a.public_jwk.x) } });

export async function registerAgent(
  env: OrchestratorBindings,
  principalId: string,
  input: { name: string; public_jwk: JWK },
  proof: { header: string | undefined; method: string; path: string },
): Promise<AgentWire> {
  const base = orchestratorConfig(env).PUBLIC_BASE_URL;
  let verified;
  try {
    verified = await verifyDpopProof(proof.header, { method: proof.method, url: `${base}${proof.path}` });
  } catch (error) {
    throw new ProblemError(401, 'invalid_signature', `Registering a key needs a DPoP proof signed by it: ${error instanceof DpopRefused ? error.message : 'invalid proof'}.`);
  }
  const jkt = await jwkThumbprint({ kty: 'OKP', crv: 'Ed25519', x: String(input.public_jwk.x) });
  if (verified.jkt !== jkt) throw new ProblemError(401, 'invalid_signature', 'The DPoP proof is not signed by public_jwk.');
  const ledger = ledgerOf(env, principalId);
  // The proof is single use like any other.
  if (!(await ledger.consumeNonce(`dpop:${jkt}:${verified.jti}`, Date.now() + 5 * 60 * 1000))) throw new ProblemError(401, 'replayed', 'This DPoP proof was already used.');
  const agentId = newId('agt');
  if (!(await claimAgentKey(env.DB, { jkt, agent_id: agentId, principal_id: principalId }))) {
    throw new ProblemError(409, 'invalid_request', 'This key already belongs to an agent.');
  }
  try {
    return toWire(await ledger.registerAgent(principalId, { agent_id: agentId, name: input.name, public_jwk: verified.jwk, key_thumbprint: jkt }));
  } catch (error) {
    await releaseAgentKey(env.DB, agentId);
    throw error;
  }
}

export async function revokeAgent(env: OrchestratorBindings, principalId: string, agentId: string): Promise<AgentWire> {
  const result = await ledgerOf(env, principalId).revokeAgent(principalId, agentId, { type: 'principal', id: principalId });
  if (!result.ok) throw refusalProblem(result);
  return toWire(result.agent);
}

export async function listAgents(env: OrchestratorBindings, principalId: string): Promise<AgentWire[]> {
  return (await ledgerOf(env, principalId).listAgents()).map(toWire);
}
