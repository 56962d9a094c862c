// Agent authentication at the orchestrator (PROTOCOL.md §2.4): every agent
// request carries a DPoP-form proof signed by the agent's key; the key's
// thumbprint names the agent, the principal's ledger rejects a reused jti or
// a revoked agent. An unknown key may only start and follow a first contact.
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import type { JWK } from 'jose';
import { DpopRefused, verifyDpopProof } from '../lib/dpop';
import { ProblemError, refusalProblem } from '../lib/problem';
import { ledgerOf, orchestratorConfig, SYSTEM_CHAIN, type OrchestratorBindings } from './env';
import { agentByThumbprint } from './store/routing';

export type AgentCaller =
  | { kind: 'agent'; agent_id: string; principal_id: string; jkt: string; jwk: JWK }
  | { kind: 'unregistered_key'; jkt: string; jwk: JWK };

export type AgentVariables = { agent: AgentCaller };

const PROOF_LIFETIME_MS = 5 * 60 * 1000;

export async function authenticateAgent(c: Context<{ Bindings: OrchestratorBindings; Variables: any }>, action: string, allowUnregistered: boolean): Promise<AgentCaller> {
  const env = c.env;
  const base = orchestratorConfig(env).PUBLIC_BASE_URL;
  let proof;
  try {
    proof = await verifyDpopProof(c.req.header('dpop'), { method: c.req.method, url: `${base}${c.req.path}` });
  } catch (error) {
    const reason = error instanceof DpopRefused ? error.message : 'invalid proof';
    await ledgerOf(env, SYSTEM_CHAIN).recordRefusal(SYSTEM_CHAIN, { actor: { type: 'system', id: 'unknown' }, action, reason: 'invalid_signature', related: [reason] });
    throw new ProblemError(401, 'invalid_signature', `The DPoP proof was refused: ${reason}.`, {}, { 'WWW-Authenticate': 'DPoP algs="EdDSA Ed25519"' });
  }
  const key = await agentByThumbprint(env.DB, proof.jkt);
  if (key) {
    const result = await ledgerOf(env, key.principal_id).authenticateAgent(key.principal_id, key.agent_id, proof.jti, action);
    if (!result.ok) throw refusalProblem(result, 401);
    return { kind: 'agent', agent_id: key.agent_id, principal_id: key.principal_id, jkt: proof.jkt, jwk: proof.jwk };
  }
  if (!allowUnregistered) {
    await ledgerOf(env, SYSTEM_CHAIN).recordRefusal(SYSTEM_CHAIN, { actor: { type: 'system', id: proof.jkt }, action, reason: 'invalid_signature', related: ['unknown key'] });
    throw new ProblemError(401, 'invalid_signature', 'This key belongs to no registered agent.');
  }
  // An unregistered key's proofs are single use too, remembered in a ledger named after the key.
  const fresh = await ledgerOf(env, `key:${proof.jkt}`).consumeNonce(`dpop:${proof.jkt}:${proof.jti}`, Date.now() + PROOF_LIFETIME_MS);
  if (!fresh) throw new ProblemError(401, 'replayed', 'This DPoP proof was already used.');
  return { kind: 'unregistered_key', jkt: proof.jkt, jwk: proof.jwk };
}

/** Route middleware: an agent (or, with `allowUnregistered`, any key) proved by DPoP. */
export const requireAgent = (action: string, allowUnregistered = false) =>
  createMiddleware<{ Bindings: OrchestratorBindings; Variables: AgentVariables }>(async (c, next) => {
    c.set('agent', await authenticateAgent(c, action, allowUnregistered));
    await next();
  });
