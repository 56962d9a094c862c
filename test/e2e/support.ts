// Helpers for the end-to-end tests: what a human (a browser-like client with a
// session cookie and its CSRF token) and an agent (a key that signs DPoP
// proofs) send to the running roles over real HTTP. Node only.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { ROOT } from '../../scripts/dev-cluster.mjs';
import { signRequest } from '../../workers/lib/http-signatures';
import { dpopProof, newAgentKey, type AgentKey } from '../support/agent-keys';

export type Json = Record<string, any>;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A role's local secrets, read the way scripts/dev-cluster.mjs writes them (lines KEY='value'). */
export function devVars(file: string): Record<string, string> {
  const vars: Record<string, string> = {};
  for (const line of readFileSync(join(ROOT, file), 'utf8').split('\n')) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (match) vars[match[1]!] = match[2]!.replace(/^'(.*)'$/, '$1');
  }
  return vars;
}

/** The human account each provider seeds for the account-linking path. */
export function existingCredentials(provider: 'cloud' | 'data') {
  const password = devVars(provider === 'cloud' ? '.dev.vars' : '.dev.vars.data').EXISTING_PASSWORD;
  if (!password) throw new Error(`EXISTING_PASSWORD is missing from the ${provider} .dev.vars`);
  return { email: 'existing@oap.local', password };
}

export async function readJson(res: Response): Promise<Json> {
  const text = await res.text();
  try {
    return JSON.parse(text) as Json;
  } catch {
    throw new Error(`expected JSON from ${res.url} (${res.status}), got: ${text.slice(0, 500)}`);
  }
}

/** A problem+json refusal with this status and code (§Conventions). */
export async function expectProblem(res: Response, status: number, code: string): Promise<Json> {
  const body = await readJson(res);
  expect({ status: res.status, code: body.code }, JSON.stringify(body)).toEqual({ status, code });
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  return body;
}

/** A human signed in at one role: the session cookie (name=value) and its CSRF token. */
export type HumanSession = { base: string; cookie: string; csrf: string; subject: string; auth_time: number };

export async function signIn(base: string, email: string, password: string): Promise<HumanSession> {
  const res = await fetch(`${base}/session`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  const body = await readJson(res);
  expect(res.status, JSON.stringify(body)).toBe(200);
  const cookie = res.headers
    .getSetCookie()
    .map((c) => c.split(';')[0]!)
    .find((c) => /^oap_[a-z0-9-]+_session=/.test(c));
  if (!cookie) throw new Error(`no session cookie from ${base}/session`);
  return { base, cookie, csrf: body.csrf_token, subject: body.principal_id ?? body.account_id, auth_time: body.auth_time };
}

/**
 * A request with the human's session cookie. State changes carry X-CSRF-Token
 * unless `csrf: false`; extra headers (an Origin, a DPoP proof) may be added.
 */
export function asHuman(
  session: HumanSession,
  method: string,
  path: string,
  options: { json?: unknown; csrf?: boolean; headers?: Record<string, string> } = {},
): Promise<Response> {
  const headers: Record<string, string> = { cookie: session.cookie, accept: 'application/json', ...options.headers };
  if (options.json !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && options.csrf !== false) headers['x-csrf-token'] = session.csrf;
  return fetch(`${session.base}${path}`, { method, headers, body: options.json === undefined ? undefined : JSON.stringify(options.json), redirect: 'manual' });
}

/** An agent request: a fresh DPoP proof (htm, htu = base + path) signed by its key. */
export async function asAgent(key: AgentKey, base: string, method: string, path: string, json?: unknown): Promise<Response> {
  const url = `${base}${path}`;
  const headers: Record<string, string> = { dpop: await dpopProof(key, method, url), accept: 'application/json' };
  if (json !== undefined) headers['content-type'] = 'application/json';
  return fetch(url, { method, headers, body: json === undefined ? undefined : JSON.stringify(json), redirect: 'manual' });
}

/** Signs up at the orchestrator and follows the link mailed to the local outbox. */
export async function signUpVerified(orchestrator: string, email: string, password: string): Promise<{ principal_id: string }> {
  const created = await fetch(`${orchestrator}/v1/principals`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password }) });
  const principal = await readJson(created);
  expect(created.status, JSON.stringify(principal)).toBe(201);
  expect(principal).toMatchObject({ email, email_verified: false });

  const outbox = await readJson(await fetch(`${orchestrator}/dev/mail`, { headers: { accept: 'application/json' } }));
  const mail = (outbox.data as Json[]).filter((m) => m.to_address === email).at(-1);
  expect(mail, `no mail to ${email} in the outbox`).toBeDefined();
  const link = new RegExp(`${orchestrator.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/verify-email\\?token=[^\\s]+`).exec(String(mail!.body))?.[0];
  expect(link, `no confirmation link in: ${mail!.body}`).toBeDefined();
  const token = new URL(link!).searchParams.get('token');

  const confirmed = await fetch(`${orchestrator}/v1/email-verifications`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }) });
  const confirmation = await readJson(confirmed);
  expect(confirmed.status, JSON.stringify(confirmation)).toBe(200);
  expect(confirmation).toEqual({ principal_id: principal.principal_id, email_verified: true });
  return { principal_id: principal.principal_id };
}

/** A principal registers an agent key: session + CSRF + a DPoP proof signed by that very key (§2.1). */
export async function registerAgent(session: HumanSession, key: AgentKey, name: string): Promise<string> {
  const res = await asHuman(session, 'POST', '/v1/agents', {
    json: { name, public_jwk: key.jwk },
    headers: { dpop: await dpopProof(key, 'POST', `${session.base}/v1/agents`) },
  });
  const agent = await readJson(res);
  expect(res.status, JSON.stringify(agent)).toBe(201);
  expect(agent.agent_id).toMatch(/^agt_/);
  return agent.agent_id;
}

export const inDays = (days: number) => new Date(Date.now() + days * 24 * 3600 * 1000).toISOString();

/** The JSON Lines of GET /v1/audit. */
export function auditLines(text: string): Json[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Json);
}

/** An agent's DPoP-bound token at a provider: an attestation from the orchestrator for the mandate, exchanged by the RFC 7523 grant (§2.2, §2.3). */
export async function providerAccessToken(orchestrator: string, providerBase: string, provider: string, key: AgentKey, mandateId: string): Promise<string> {
  const attested = await asAgent(key, orchestrator, 'POST', '/v1/attestations', { mandate_id: mandateId, provider });
  const issued = await readJson(attested);
  expect(attested.status, JSON.stringify(issued)).toBe(200);
  const res = await fetch(`${providerBase}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(key, 'POST', `${providerBase}/oauth/token`) },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: issued.attestation }),
  });
  const body = await readJson(res);
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body.access_token;
}

/** A paid call as §3.1 wants it: the DPoP-bound token, an RFC 9421 signature over the body (none for DELETE and rotate), an Idempotency-Key. */
export async function signedPaidCall(providerBase: string, key: AgentKey, accessToken: string, method: string, path: string, json: unknown, idempotencyKey: string): Promise<Response> {
  const url = `${providerBase}${path}`;
  const body = json === undefined ? '' : JSON.stringify(json);
  const signed = await signRequest({ method, targetUri: url, body, privateKey: key.privateKey, keyid: key.jkt });
  return fetch(url, {
    method,
    headers: {
      authorization: `DPoP ${accessToken}`,
      dpop: await dpopProof(key, method, url, { accessToken }),
      'idempotency-key': idempotencyKey,
      ...(json === undefined ? {} : { 'content-type': 'application/json' }),
      ...signed,
    },
    ...(json === undefined ? {} : { body }),
  });
}

/** An agent's token-authenticated read at a provider. */
export async function tokenRead(providerBase: string, agent: { key: AgentKey; token: string }, path: string): Promise<Response> {
  const url = `${providerBase}${path}`;
  return fetch(url, { headers: { authorization: `DPoP ${agent.token}`, dpop: await dpopProof(agent.key, 'GET', url, { accessToken: agent.token }) } });
}

export type ProviderAgent = { key: AgentKey; token: string; human: HumanSession; mandateId: string };

/**
 * A new principal signed in, its registered agent, a mandate for `services`
 * at one provider that the human approved, and the agent's token there.
 */
export async function agentAtProvider(urls: { orchestrator: string } & Record<string, string>, provider: string, services: string[], limitCents = 5000): Promise<ProviderAgent> {
  const password = 'e2e agent password';
  const email = `${provider}-${crypto.randomUUID().slice(0, 8)}@example.test`;
  await signUpVerified(urls.orchestrator, email, password);
  const human = await signIn(urls.orchestrator, email, password);
  const key = await newAgentKey();
  await registerAgent(human, key, `${provider} agent`);
  const requested = await asAgent(key, urls.orchestrator, 'POST', '/v1/mandates', {
    description: `Work at ${provider}`,
    scope: [{ provider, services }],
    spend_limit: { amount: limitCents, currency: 'usd', period: 'month' },
    expires_at: inDays(30),
  });
  const mandate = await readJson(requested);
  expect(requested.status, JSON.stringify(mandate)).toBe(201);
  expect((await asHuman(human, 'POST', `/v1/mandates/${mandate.mandate_id}/approve`, { json: {} })).status).toBe(200);
  return { key, human, mandateId: mandate.mandate_id, token: await providerAccessToken(urls.orchestrator, urls[provider]!, provider, key, mandate.mandate_id) };
}
