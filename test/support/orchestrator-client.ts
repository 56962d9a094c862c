// Drives the orchestrator Worker under test as a human (cookie session) and as agents (DPoP), in workerd.
import { runInDurableObject } from 'cloudflare:test';
import { exports } from 'cloudflare:workers';
import { env } from 'cloudflare:workers';
import { dpopProof, newAgentKey, type AgentKey } from './agent-keys';

export const ORCHESTRATOR = 'http://127.0.0.1:8787';

export const call = (path: string, init: RequestInit = {}) => exports.default.fetch(new Request(`${ORCHESTRATOR}${path}`, init));

export type Human = { principal_id: string; email: string; password: string; cookie: string; csrf: string; headers: (extra?: Record<string, string>) => Record<string, string> };

let counter = 0;

/** Signs up a principal, confirms its email from the outbox, and signs in. */
export async function newPrincipal(options: { email?: string; verified?: boolean } = {}): Promise<Human> {
  const email = options.email ?? `human${Date.now()}${counter++}@example.test`;
  const password = 'correct horse battery staple';
  const created = await call('/v1/principals', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  if (created.status !== 201) throw new Error(`sign-up failed: ${created.status} ${await created.text()}`);
  const { principal_id } = (await created.json()) as { principal_id: string };
  if (options.verified !== false) {
    const mail = await (env as unknown as TestEnv).DB.prepare('SELECT body FROM mail_outbox WHERE to_address = ?1 ORDER BY created_at DESC LIMIT 1')
      .bind(email)
      .first<{ body: string }>();
    const token = /token=([A-Za-z0-9_-]+)/.exec(mail!.body)![1]!;
    const confirmed = await call('/v1/email-verifications', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
    if (confirmed.status !== 200) throw new Error(`confirmation failed: ${confirmed.status}`);
  }
  return signIn(email, password, principal_id);
}

export async function signIn(email: string, password: string, principal_id: string): Promise<Human> {
  const res = await call('/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  if (res.status !== 200) throw new Error(`sign-in failed: ${res.status} ${await res.text()}`);
  const cookie = res.headers.get('set-cookie')!.split(';')[0]!;
  const { csrf_token } = (await res.json()) as { csrf_token: string };
  return {
    principal_id,
    email,
    password,
    cookie,
    csrf: csrf_token,
    headers: (extra = {}) => ({ cookie, 'x-csrf-token': csrf_token, 'content-type': 'application/json', ...extra }),
  };
}

/** The human signed in again, now (a session does not outlast a clock moved by weeks). */
export const signedIn = (human: Human) => signIn(human.email, human.password, human.principal_id);

/** The human's notifications of one type, newest first. */
export async function notificationsOf(human: Human, type: string): Promise<{ id: string; type: string; created: string; data: Record<string, any> }[]> {
  const res = await call('/v1/notifications?limit=100', { headers: { cookie: human.cookie } });
  return ((await res.json()) as { data: { id: string; type: string; created: string; data: Record<string, any> }[] }).data.filter((n) => n.type === type);
}

export type Agent = { key: AgentKey; agent_id: string; request: (method: string, path: string, body?: unknown, proof?: Parameters<typeof dpopProof>[3]) => Promise<Response> };

/** An agent as an agent acts: every request carries a fresh DPoP proof by its key. */
export function agentClient(key: AgentKey, agent_id = ''): Agent {
  return {
    key,
    agent_id,
    request: async (method, path, body, proof) =>
      call(path, {
        method,
        headers: {
          dpop: await dpopProof(key, method, `${ORCHESTRATOR}${path.split('?')[0]}`, proof),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }),
  };
}

/** A principal registers a fresh agent key (proved by a DPoP proof of that key). */
export async function registerAgent(human: Human, name = 'test agent'): Promise<Agent> {
  const key = await newAgentKey();
  const res = await call('/v1/agents', {
    method: 'POST',
    headers: human.headers({ dpop: await dpopProof(key, 'POST', `${ORCHESTRATOR}/v1/agents`) }),
    body: JSON.stringify({ name, public_jwk: key.jwk }),
  });
  if (res.status !== 201) throw new Error(`register failed: ${res.status} ${await res.text()}`);
  const { agent_id } = (await res.json()) as { agent_id: string };
  return agentClient(key, agent_id);
}

export const inAYear = () => new Date(Date.now() + 300 * 24 * 3600 * 1000).toISOString();

export function mandateBody(overrides: Record<string, unknown> = {}) {
  return {
    description: 'Set up the staging site',
    scope: [{ provider: 'cloud', services: ['domain', 'worker-script'], max_per_charge: { amount: 2000, currency: 'usd' } }],
    spend_limit: { amount: 5000, currency: 'usd', period: 'month' },
    expires_at: inAYear(),
    ...overrides,
  };
}

/** A registered agent with an active mandate its principal approved. */
export async function activeMandate(human: Human, agent?: Agent, overrides: Record<string, unknown> = {}) {
  const a = agent ?? (await registerAgent(human));
  const created = await a.request('POST', '/v1/mandates', mandateBody(overrides));
  if (created.status !== 201) throw new Error(`mandate request failed: ${created.status} ${await created.text()}`);
  const { mandate_id } = (await created.json()) as { mandate_id: string };
  const approved = await call(`/v1/mandates/${mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: '{}' });
  if (approved.status !== 200) throw new Error(`approve failed: ${approved.status} ${await approved.text()}`);
  return { agent: a, mandate_id, mandate: (await approved.json()) as Record<string, unknown> };
}

/**
 * Moves when a charge was made `days` back in its principal's ledger, as if that much time had passed since: a
 * renewal is taken only once the period the charge paid for has ended (durable-objects/ledger/renewal-periods.ts).
 */
export async function chargeMadeDaysAgo(principalId: string, chargeId: string, days: number) {
  const ledgers = (env as unknown as TestEnv).LEDGER;
  await runInDurableObject(ledgers.get(ledgers.idFromName(principalId)), (_, state) => {
    state.storage.sql.exec('UPDATE holds SET created = created - ? WHERE id = ?', days * 24 * 60 * 60 * 1000, chargeId);
  });
}
