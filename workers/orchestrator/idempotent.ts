// PROTOCOL Conventions: every mutating POST accepts an Idempotency-Key,
// scoped to the caller and the path. At the orchestrator the caller is a
// principal (a session) or an agent (its key's proof; a key not yet
// registered is its own caller), and the record lives in that caller's
// ledger, beside the audit trail of what the request did.
import { idempotency, sessionCaller } from '../lib/idempotency';
import type { AgentCaller } from './agent-auth';
import { ledgerOf, type OrchestratorBindings } from './env';

/** The records of a signed-in principal: after principalSession (or humanOnly). */
export const principalIdempotent = idempotency({ caller: sessionCaller(ledgerOf) });

/** The records of the agent that proved its key: after requireAgent. */
export const agentIdempotent = idempotency({
  caller: (c) => {
    const env = c.env as OrchestratorBindings;
    const agent = c.get('agent') as AgentCaller;
    if (agent.kind === 'agent') return { store: ledgerOf(env, agent.principal_id), caller: `agent:${agent.agent_id}` };
    return { store: ledgerOf(env, `key:${agent.jkt}`), caller: `key:${agent.jkt}` };
  },
});
