// Signed webhooks across the running Workers (PROTOCOL.md §3.2 and "Webhooks"):
// spend crosses 50 % of a mandate's limit through a real paid call, and the
// orchestrator POSTs the budget alert to the principal's endpoints, signed
// with each endpoint's secret, retried with backoff until a 2xx.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { signRequest } from '../../workers/lib/http-signatures';
import { dpopProof, newAgentKey, type AgentKey } from '../support/agent-keys';
import { asAgent, asHuman, auditLines, expectProblem, inDays, readJson, registerAgent, signIn, signUpVerified, sleep, type HumanSession, type Json } from './support';

const urls = inject('urls');
const PASSWORD = 'webhook test password';

// ── A paying agent (as in payment.test.ts) ──────────────────────────────────

type PaidAgent = { key: AgentKey; agentId: string; mandateId: string; human: HumanSession; token: string };

/** A fresh principal whose agent holds an active mandate at "cloud" (domains only) and a DPoP-bound token there. */
async function paidAgent(spendLimit: number): Promise<PaidAgent> {
  const email = `hooks-${crypto.randomUUID().slice(0, 8)}@example.test`;
  await signUpVerified(urls.orchestrator, email, PASSWORD);
  const human = await signIn(urls.orchestrator, email, PASSWORD);
  const key = await newAgentKey();
  const agentId = await registerAgent(human, key, 'webhook agent');
  const created = await readJson(
    await asAgent(key, urls.orchestrator, 'POST', '/v1/mandates', {
      description: 'Register a domain',
      scope: [{ provider: 'cloud', services: ['domain'] }],
      spend_limit: { amount: spendLimit, currency: 'usd', period: 'month' },
      expires_at: inDays(30),
    }),
  );
  expect(created.mandate_id, JSON.stringify(created)).toMatch(/^mdt_/);
  const approved = await asHuman(human, 'POST', `/v1/mandates/${created.mandate_id}/approve`, { json: {} });
  expect(approved.status).toBe(200);
  const { attestation } = await readJson(await asAgent(key, urls.orchestrator, 'POST', '/v1/attestations', { mandate_id: created.mandate_id, provider: 'cloud' }));
  const res = await fetch(`${urls.cloud}/oauth/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(key, 'POST', `${urls.cloud}/oauth/token`) },
    body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: attestation }),
  });
  const body = await readJson(res);
  expect(res.status, JSON.stringify(body)).toBe(200);
  return { key, agentId, mandateId: created.mandate_id, human, token: body.access_token };
}

/** A paid call at "cloud" as §3.1 wants it: DPoP-bound token, RFC 9421 signature over the body, Idempotency-Key. */
async function paidCall(agent: PaidAgent, json: unknown, idempotencyKey: string) {
  const url = `${urls.cloud}/v1/resources`;
  const body = JSON.stringify(json);
  const signed = await signRequest({ method: 'POST', targetUri: url, body, privateKey: agent.key.privateKey, keyid: agent.key.jkt });
  return fetch(url, {
    method: 'POST',
    headers: {
      authorization: `DPoP ${agent.token}`,
      dpop: await dpopProof(agent.key, 'POST', url, { accessToken: agent.token }),
      'content-type': 'application/json',
      'idempotency-key': idempotencyKey,
      ...signed,
    },
    body,
  });
}

/** Registers a domain ($10.44): over 50 % of a $20 mandate. */
async function buyDomain(agent: PaidAgent) {
  const res = await paidCall(agent, { service: 'domain', plan: 'com-1y', parameters: { name: `hook-${crypto.randomUUID().slice(0, 10)}.com` } }, crypto.randomUUID());
  const body = await readJson(res);
  expect(res.status, JSON.stringify(body)).toBe(201);
  return body;
}

// ── A receiver on loopback ──────────────────────────────────────────────────

type Received = { path: string; method: string; headers: IncomingHttpHeaders; body: string; at: number; status: number };

/** Records every request; each path answers with the statuses queued for it (then 200), and redirects where told. */
class Receiver {
  readonly received: Received[] = [];
  #server: Server;
  #statuses = new Map<string, number[]>();
  #redirects = new Map<string, string>();

  constructor() {
    this.#server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '';
        const redirect = this.#redirects.get(path);
        const status = redirect ? 307 : (this.#statuses.get(path)?.shift() ?? 200);
        this.received.push({ path, method: req.method ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8'), at: Date.now(), status });
        res.writeHead(status, redirect ? { location: redirect } : { 'content-type': 'text/plain' });
        res.end(status < 300 ? 'ok' : '');
      });
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', () => resolve());
    });
  }

  url(path: string) {
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}${path}`;
  }

  answer(path: string, ...statuses: number[]) {
    this.#statuses.set(path, statuses);
  }

  redirect(path: string, to: string) {
    this.#redirects.set(path, to);
  }

  at(path: string) {
    return this.received.filter((r) => r.path === path);
  }

  /** Waits until `count` requests reached `path`, polling every 100 ms for at most `timeoutMs`. */
  async waitFor(path: string, count: number, timeoutMs: number): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.at(path).length < count && Date.now() < deadline) await sleep(100);
    const got = this.at(path);
    expect(got.length, `requests to ${path} within ${timeoutMs} ms`).toBeGreaterThanOrEqual(count);
    return got;
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

// ── Checks a receiver makes ─────────────────────────────────────────────────

/** Verifies OAP-Signature as a receiver would; returns its t. */
function verifySignature(request: Received, secret: string): number {
  const header = request.headers['oap-signature'];
  expect(typeof header, 'OAP-Signature header').toBe('string');
  const parts = (header as string).split(',').map((p) => p.trim().split('=') as [string, string]);
  const ts = parts.filter(([k]) => k === 't').map(([, v]) => v);
  expect(ts).toHaveLength(1);
  expect(ts[0]).toMatch(/^\d+$/);
  const t = Number(ts[0]);
  const v1s = parts.filter(([k]) => k === 'v1').map(([, v]) => v);
  expect(v1s.length).toBeGreaterThanOrEqual(1);
  const expected = createHmac('sha256', secret).update(`${t}.${request.body}`, 'utf8').digest();
  const matches = v1s.filter((v) => /^[0-9a-f]{64}$/.test(v) && timingSafeEqual(Buffer.from(v, 'hex'), expected));
  expect(matches, `no v1 in ${String(header)} is the HMAC of t.body`).toHaveLength(1);
  // Receivers reject t older than 300 s: it must be now, give or take.
  expect(Math.abs(Math.floor(request.at / 1000) - t)).toBeLessThanOrEqual(300);
  return t;
}

async function addEndpoint(human: HumanSession, url: string) {
  const res = await asHuman(human, 'POST', '/v1/webhook_endpoints', { json: { url } });
  const body = await readJson(res);
  expect(res.status, JSON.stringify(body)).toBe(201);
  expect(res.headers.get('cache-control')).toContain('no-store');
  expect(body).toMatchObject({ id: expect.any(String), url, secret: expect.stringMatching(/^whsec_/) });
  return body as { id: string; url: string; secret: string };
}

/** The principal's audit events of one action, polled (bounded) until `count` are there. */
async function auditOf(human: HumanSession, action: string, count: number, timeoutMs = 5000): Promise<Json[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await asHuman(human, 'GET', `/v1/audit?action=${encodeURIComponent(action)}`);
    expect(res.status).toBe(200);
    const events = auditLines(await res.text());
    if (events.length >= count || Date.now() >= deadline) return events;
    await sleep(200);
  }
}

// ── The tests ───────────────────────────────────────────────────────────────

describe('budget alerts delivered as signed webhooks', () => {
  const receiver = new Receiver();
  beforeAll(() => receiver.listen());
  afterAll(() => receiver.close());

  it('accepts a plain-http loopback endpoint in local development, and still refuses private and non-loopback http ones', async () => {
    const agent = await paidAgent(2000);
    await addEndpoint(agent.human, receiver.url('/accepted'));
    for (const url of ['http://example.test/hook', 'https://10.0.0.5/x', 'https://192.168.1.1/x']) {
      const res = await asHuman(agent.human, 'POST', '/v1/webhook_endpoints', { json: { url } });
      expect(res.status, url).toBe(422);
    }
    await expectProblem(await asAgent(agent.key, urls.orchestrator, 'POST', '/v1/webhook_endpoints', { url: receiver.url('/agent') }), 403, 'human_required');
    await expectProblem(await asHuman(agent.human, 'POST', '/v1/webhook_endpoints', { json: { url: receiver.url('/nocsrf') }, csrf: false }), 403, 'csrf_failed');
  });

  it('POSTs {id, type, created, data} signed with each endpoint’s secret; a 500 is retried after ~1 s with the identical body', async () => {
    const agent = await paidAgent(2000);
    receiver.answer('/flaky', 500);
    const flaky = await addEndpoint(agent.human, receiver.url('/flaky'));
    const steady = await addEndpoint(agent.human, receiver.url('/steady'));
    expect(flaky.secret).not.toBe(steady.secret);

    const started = Date.now();
    await buyDomain(agent);

    // The first attempt arrives within ~10 s, answered 500; the retry follows.
    const [first, retry] = await receiver.waitFor('/flaky', 2, 20_000);
    expect(first!.at - started).toBeLessThan(10_000);
    expect(first!.status).toBe(500);
    expect(retry!.status).toBe(200);

    expect(first!.method).toBe('POST');
    expect(first!.headers['content-type']).toContain('application/json');
    const event = JSON.parse(first!.body) as Json;
    expect(Object.keys(event).sort()).toEqual(['created', 'data', 'id', 'type']);
    expect(event).toMatchObject({ id: expect.any(String), type: 'budget.alert' });
    expect(Number.isNaN(Date.parse(event.created))).toBe(false);
    expect(event.data).toEqual({
      threshold: 50,
      limit: { amount: 2000, currency: 'usd' },
      spent: { amount: 1044, currency: 'usd' },
      period: new Date().toISOString().slice(0, 7),
      scope: 'mandate',
      id: agent.mandateId,
    });
    verifySignature(first!, flaky.secret);

    // The retry: backoff starts at about a second; the body is the same event, byte for byte, signed again.
    const gap = retry!.at - first!.at;
    expect(gap).toBeGreaterThanOrEqual(800);
    expect(gap).toBeLessThan(10_000);
    expect(retry!.body).toBe(first!.body);
    verifySignature(retry!, flaky.secret);

    // The other endpoint got the same event once, with its own secret (and not the other's).
    const [atSteady] = await receiver.waitFor('/steady', 1, 10_000);
    expect(atSteady!.body).toBe(first!.body);
    verifySignature(atSteady!, steady.secret);
    expect(() => verifySignature(atSteady!, flaky.secret)).toThrow();

    // The event is the notification the principal reads.
    const notifications = await readJson(await asHuman(agent.human, 'GET', '/v1/notifications'));
    expect(notifications.data).toContainEqual(event);

    // Each attempt is an audit event: at /flaky one failed then one succeeded, at /steady one succeeded.
    const deliveries = await auditOf(agent.human, 'webhook.deliver', 3);
    const byEndpoint = (id: string) => deliveries.filter((e) => e.target === id).map((e) => e.outcome);
    expect(byEndpoint(flaky.id)).toEqual(['failed', 'succeeded']);
    expect(byEndpoint(steady.id)).toEqual(['succeeded']);
    expect(deliveries.every((e) => (e.related as string[]).includes(event.id))).toBe(true);
    expect(await auditOf(agent.human, 'budget.alert', 1)).toHaveLength(1);

    // A delivered event is not sent again (the next backoff step would be ~2 s).
    await sleep(3000);
    expect(receiver.at('/flaky')).toHaveLength(2);
    expect(receiver.at('/steady')).toHaveLength(1);
  });

  it('does not follow a redirect: the Location is never requested and the attempt counts as failed, so it is retried', async () => {
    const agent = await paidAgent(2000);
    receiver.redirect('/moved', '/landed');
    const moved = await addEndpoint(agent.human, receiver.url('/moved'));
    await buyDomain(agent);
    const [first, second] = await receiver.waitFor('/moved', 2, 20_000);
    expect(first!.status).toBe(307);
    expect(second!.body).toBe(first!.body);
    verifySignature(first!, moved.secret);
    expect(receiver.at('/landed')).toEqual([]);
    const deliveries = await auditOf(agent.human, 'webhook.deliver', 2);
    expect(deliveries.filter((e) => e.target === moved.id).slice(0, 2).map((e) => e.outcome)).toEqual(['failed', 'failed']);
  });
});
