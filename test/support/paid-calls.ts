// An agent with a provider token, and the signed paid calls it makes
// (PROTOCOL.md §3.1: DPoP-bound token, RFC 9421 signature, Idempotency-Key),
// for the workerd tests of a provider against the fake orchestrator.
import { env } from 'cloudflare:workers';
import { signRequest } from '../../workers/lib/http-signatures';
import { dpopProof, newAgentKey, type AgentKey } from './agent-keys';
import { call, obtainToken, PROVIDER, type AttestationOptions } from './fake-orchestrator';

export type Json = Record<string, any>;
export type TokenAgent = { key: AgentKey; sub: string; token: string; account: string; agentId: string; mandateId: string };

/** A fresh agent key, a fresh principal (pairwise sub) and a token for them at the provider. */
export async function agentWithToken(options: Partial<AttestationOptions> = {}): Promise<TokenAgent> {
  const key = await newAgentKey();
  const sub = `pw_${crypto.randomUUID()}`;
  const { token, attestation } = await obtainToken({ agent: key, sub, ...options });
  return { key, sub, token: token.access_token, account: token.account_id, agentId: attestation.agentId, mandateId: attestation.mandateId };
}

/** A signed paid call (POST, PATCH, DELETE under /v1/resources); a retry passes the same idempotency key. */
export async function paidCall(agent: Pick<TokenAgent, 'key' | 'token'>, method: 'POST' | 'PATCH' | 'DELETE', path: string, body?: unknown, idempotencyKey = crypto.randomUUID()) {
  const url = `${PROVIDER}${path}`;
  const text = body === undefined ? '' : JSON.stringify(body);
  const signed = await signRequest({ method, targetUri: url, body: text, privateKey: agent.key.privateKey, keyid: agent.key.jkt });
  const res = await call(path, {
    method,
    headers: {
      authorization: `DPoP ${agent.token}`,
      dpop: await dpopProof(agent.key, method, url, { accessToken: agent.token }),
      'idempotency-key': idempotencyKey,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...signed,
    },
    ...(body === undefined ? {} : { body: text }),
  });
  return { status: res.status, contentType: res.headers.get('content-type'), retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Json };
}

/** A token-authenticated read. */
export async function tokenRead(agent: Pick<TokenAgent, 'key' | 'token'>, path: string) {
  const url = `${PROVIDER}${path}`;
  const res = await call(path, { headers: { authorization: `DPoP ${agent.token}`, dpop: await dpopProof(agent.key, 'GET', url, { accessToken: agent.token }) } });
  return { status: res.status, body: (await res.json()) as Json };
}

/** An event of an account's trail as a test reads it. */
export type TrailEvent = { id: string; action: string; outcome: string; reason: string | null; target: string | null; actor: { type: string; id: string }; mandate_id: string | null; related: string[] };

/** An account's whole trail, in order: copied to D1 first, since the ledger's outbox keeps an event only until its copy. */
export async function accountTrail(account: string): Promise<TrailEvent[]> {
  const testEnv = env as unknown as TestEnv;
  await testEnv.LEDGER.get(testEnv.LEDGER.idFromName(account)).flushAuditOutbox();
  const { results } = await testEnv.DB.prepare('SELECT * FROM audit_events WHERE principal = ?1 ORDER BY seq').bind(account).all<Record<string, string>>();
  return results.map((r) => ({
    id: r.id!,
    action: r.action!,
    outcome: r.outcome!,
    reason: r.reason ?? null,
    target: r.target ?? null,
    actor: { type: r.actor_type!, id: r.actor_id! },
    mandate_id: r.mandate_id ?? null,
    related: JSON.parse(r.related!) as string[],
  }));
}
