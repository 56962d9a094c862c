// Budget alerts, notifications and webhook endpoints at the orchestrator
// (PROTOCOL.md §3.2 and "Webhooks"): alerts fire once per period at 50 %, 80 %
// and 100 % of each limit, as an audit event, a notification and a webhook.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { webhookSignature } from '../../workers/lib/webhooks';
import { asProvider, chargeBody, subjectAt } from '../support/fake-provider';
import { activeMandate, call, newPrincipal, type Human } from '../support/orchestrator-client';

type Money = { amount: number; currency: string };
type AlertData = { threshold: number; limit: Money; spent: Money; period: string; scope: 'principal' | 'mandate'; id: string | null };
type Notification = { id: string; type: string; created: string; data: AlertData };
type AuditLine = { id: string; seq: number; action: string; target: string | null; outcome: string; reason: string | null; actor: { type: string; id: string }; amount: Money | null };

const period = () => new Date().toISOString().slice(0, 7);
const usd = (amount: number): Money => ({ amount, currency: 'usd' });

/** A principal, an agent with an active mandate at "cloud" on these terms, and charge requests for it. */
async function setup(overrides: Record<string, unknown> = {}, human?: Human) {
  const h = human ?? (await newPrincipal());
  const { agent, mandate_id } = await activeMandate(h, undefined, overrides);
  const sub = await subjectAt(agent, mandate_id, 'cloud');
  const body = (amount: number) => chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount });
  /** Authorizes one charge through POST /v1/charges; it must be accepted. */
  const charge = async (amount: number) => {
    const res = await asProvider('cloud', 'POST', '/v1/charges', await body(amount));
    const json = (await res.json()) as { charge_id: string };
    expect(res.status, JSON.stringify(json)).toBe(201);
    return json.charge_id;
  };
  const voidCharge = async (chargeId: string) => {
    const res = await asProvider('cloud', 'POST', `/v1/charges/${chargeId}/void`, { reason: 'test' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ charge_id: chargeId, status: 'voided' });
  };
  return { human: h, agent, mandate_id, body, charge, voidCharge };
}

async function notifications(human: Human): Promise<Notification[]> {
  const res = await call('/v1/notifications?limit=100', { headers: { cookie: human.cookie } });
  const body = (await res.json()) as { data: Notification[]; has_more: boolean };
  expect(res.status, JSON.stringify(body)).toBe(200);
  expect(body.has_more).toBe(false);
  return body.data;
}

const alertsFor = (list: Notification[], scope: 'principal' | 'mandate') => list.filter((n) => n.type === 'budget.alert' && n.data.scope === scope);

async function auditTrail(human: Human, query = ''): Promise<AuditLine[]> {
  const res = await call(`/v1/audit${query}`, { headers: { cookie: human.cookie } });
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('application/jsonl');
  return jsonLines(res);
}

/** JSON Lines, decoded from bytes (application/jsonl is not a text/* type). */
async function jsonLines(res: Response): Promise<AuditLine[]> {
  return new TextDecoder()
    .decode(await res.arrayBuffer())
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as AuditLine);
}

async function limits(human: Human) {
  const res = await call('/v1/limits', { headers: { cookie: human.cookie } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { data: { scope: string; id?: string | null; limit: Money; spent: Money; period: string }[] }).data;
}

describe('budget alerts (§3.2)', () => {
  it('alerts once at 50 %, 80 % and 100 % of the mandate limit, newest first, and never twice in the period', async () => {
    const { human, mandate_id, charge, voidCharge } = await setup({ spend_limit: { amount: 5000, currency: 'usd', period: 'month' } });

    // $10, $20: below 50 % of $50, nothing yet.
    await charge(1000);
    await charge(1000);
    expect(alertsFor(await notifications(human), 'mandate')).toEqual([]);

    // The 3rd charge crosses 50 % ($25), the 4th 80 % ($40), the 5th 100 % ($50): one alert each, as it happens.
    await charge(1000);
    expect(alertsFor(await notifications(human), 'mandate').map((n) => n.data.threshold)).toEqual([50]);
    const fourth = await charge(1000);
    expect(alertsFor(await notifications(human), 'mandate').map((n) => n.data.threshold)).toEqual([80, 50]);
    const fifth = await charge(1000);

    const list = await notifications(human);
    const mandateAlerts = alertsFor(list, 'mandate');
    expect(mandateAlerts.map((n) => n.data.threshold)).toEqual([100, 80, 50]);
    const spentAt = { 50: 3000, 80: 4000, 100: 5000 } as Record<number, number>;
    for (const n of mandateAlerts) {
      expect(n.id).toMatch(/^ntf_/);
      expect(Number.isNaN(Date.parse(n.created))).toBe(false);
      expect(n.data).toEqual({ threshold: n.data.threshold, limit: usd(5000), spent: usd(spentAt[n.data.threshold]!), period: period(), scope: 'mandate', id: mandate_id });
    }
    expect(new Set(list.map((n) => n.id)).size).toBe(list.length);
    // Newest first.
    const created = list.map((n) => Date.parse(n.created));
    expect([...created].sort((a, b) => b - a)).toEqual(created);

    // The $50 spent is also 50 % of the principal's $100 monthly limit: a separate alert of its own.
    expect(alertsFor(list, 'principal').map((n) => n.data)).toEqual([{ threshold: 50, limit: usd(10_000), spent: usd(5000), period: period(), scope: 'principal', id: null }]);

    // Voiding the 4th and 5th drops the spend to $30; re-authorizing crosses 80 % and 100 % again, and alerts nobody.
    await voidCharge(fifth);
    await voidCharge(fourth);
    expect((await limits(human)).find((l) => l.scope === 'mandate' && l.id === mandate_id)?.spent).toEqual(usd(3000));
    await charge(1000);
    await charge(1000);
    expect((await limits(human)).find((l) => l.scope === 'mandate' && l.id === mandate_id)?.spent).toEqual(usd(5000));
    const after = await notifications(human);
    expect(after).toEqual(list);

    // Each alert is in the audit trail, as the system's budget.alert, one per threshold and scope.
    const events = await auditTrail(human, '?action=budget.alert');
    expect(events.length).toBe(4);
    expect(events.every((e) => e.action === 'budget.alert' && e.outcome === 'succeeded')).toBe(true);
    expect(events.map((e) => [e.target, e.reason])).toEqual([
      [`mandate:${mandate_id}`, '50%'],
      [`mandate:${mandate_id}`, '80%'],
      ['principal', '50%'],
      [`mandate:${mandate_id}`, '100%'],
    ]);
    // The unfiltered trail carries them as well.
    expect((await auditTrail(human)).filter((e) => e.action === 'budget.alert')).toHaveLength(4);
  });

  it('alerts for the principal’s monthly limit ($100 by default) separately from the mandate’s', async () => {
    // A mandate of $200 leaves the principal's $100 as the limit that binds.
    const { human, mandate_id, charge, body } = await setup({
      spend_limit: { amount: 20_000, currency: 'usd', period: 'month' },
      scope: [{ provider: 'cloud', services: ['domain'] }],
    });
    for (let i = 0; i < 5; i++) await charge(2000); // $20 … $100
    // The principal's limit is spent: the next charge is declined, and a decline alerts nobody.
    const declined = await asProvider('cloud', 'POST', '/v1/charges', await body(100));
    expect(declined.status).toBe(402);
    expect(await declined.json()).toMatchObject({ code: 'spend_limit_exceeded', limit: usd(10_000), spent: usd(10_000) });

    const list = await notifications(human);
    const principalAlerts = alertsFor(list, 'principal');
    expect(principalAlerts.map((n) => n.data)).toEqual([
      { threshold: 100, limit: usd(10_000), spent: usd(10_000), period: period(), scope: 'principal', id: null },
      { threshold: 80, limit: usd(10_000), spent: usd(8000), period: period(), scope: 'principal', id: null },
      { threshold: 50, limit: usd(10_000), spent: usd(6000), period: period(), scope: 'principal', id: null },
    ]);
    // $100 of the mandate's $200 is its own 50 %, and only that.
    expect(alertsFor(list, 'mandate').map((n) => n.data)).toEqual([{ threshold: 50, limit: usd(20_000), spent: usd(10_000), period: period(), scope: 'mandate', id: mandate_id }]);
    expect(list).toHaveLength(4);

    const targets = (await auditTrail(human, '?action=budget.alert')).map((e) => `${e.target} ${e.reason}`);
    expect(targets).toEqual(['principal 50%', 'principal 80%', 'principal 100%', `mandate:${mandate_id} 50%`]);
  });

  it('shows notifications to the human only: an agent gets 403 human_required, nobody signed in 401', async () => {
    const { agent } = await setup();
    const byAgent = await agent.request('GET', '/v1/notifications');
    expect(byAgent.status).toBe(403);
    expect(byAgent.headers.get('content-type')).toBe('application/problem+json');
    expect(await byAgent.json()).toMatchObject({ status: 403, code: 'human_required' });
    const anonymous = await call('/v1/notifications');
    expect(anonymous.status).toBe(401);
    expect(await anonymous.json()).toMatchObject({ code: 'unauthorized' });
  });
});

describe('webhook endpoints ("Webhooks")', () => {
  const addEndpoint = (human: Human, url: unknown, headers?: Record<string, string>) =>
    call('/v1/webhook_endpoints', { method: 'POST', headers: headers ?? human.headers(), body: JSON.stringify({ url }) });

  it('adds an https endpoint and shows its secret once, never stored in the audit trail', async () => {
    const human = await newPrincipal();
    const res = await addEndpoint(human, 'https://example.test/hook');
    const body = (await res.json()) as { id: string; url: string; secret: string };
    expect(res.status, JSON.stringify(body)).toBe(201);
    expect(res.headers.get('cache-control')).toContain('no-store');
    expect(body).toEqual({ id: expect.any(String), url: 'https://example.test/hook', secret: expect.stringMatching(/^whsec_.{16,}/) });
    const other = (await (await addEndpoint(human, 'https://example.test/other')).json()) as { id: string; secret: string };
    expect(other.id).not.toBe(body.id);
    expect(other.secret).not.toBe(body.secret);

    const trail = await call('/v1/audit', { headers: { cookie: human.cookie } });
    const text = new TextDecoder().decode(await trail.arrayBuffer());
    expect(text).toContain('webhook_endpoint.create');
    expect(text).not.toContain(body.secret);
    expect(text).not.toContain(other.secret);
  });

  it.each([
    ['plain http to a host that is not loopback', 'http://example.test/hook'],
    ['a private address (10/8)', 'https://10.0.0.5/x'],
    ['a private address (192.168/16)', 'https://192.168.1.1/x'],
    ['a private address (172.16/12)', 'https://172.16.0.1/x'],
    ['a link-local address', 'https://169.254.169.254/latest/meta-data'],
    ['credentials in the URL', 'https://user:pass@example.test/hook'],
    ['something that is not a URL', 'not a url'],
    ['another scheme', 'ftp://example.test/hook'],
    // DEV_SEED is false in these tests: local development mode is off.
    ['plain http to loopback outside local development', 'http://127.0.0.1:9999/hook'],
    ['plain http to localhost outside local development', 'http://localhost:9999/hook'],
  ])('refuses %s with 422 (%s)', async (_why, url) => {
    const human = await newPrincipal();
    const res = await addEndpoint(human, url);
    expect(res.status).toBe(422);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    const problem = (await res.json()) as { code: string; status: number };
    expect(problem.status).toBe(422);
    expect(['invalid_request', 'invalid_parameters']).toContain(problem.code);
  });

  it.each([
    ['a unique-local IPv6 address', 'https://[fd12:3456:789a::1]/x'],
    ['an IPv4-mapped IPv6 private address', 'https://[::ffff:10.0.0.5]/x'],
    ['an IPv4-mapped IPv6 loopback address', 'https://[::ffff:127.0.0.1]/x'],
    ['a name under localhost (RFC 6761)', 'https://foo.localhost/x'],
    ['an mDNS name', 'https://printer.local/x'],
    ['a deprecated IPv4-compatible IPv6 loopback', 'https://[::7f00:1]/x'],
    ['a deprecated site-local IPv6 address', 'https://[fec0::1]/x'],
    ['a NAT64 address embedding a private IPv4', 'https://[64:ff9b::a00:1]/x'],
    ['a multicast address', 'https://224.0.0.1/x'],
    ['the broadcast address', 'https://255.255.255.255/x'],
    ['a carrier-grade NAT address', 'https://100.64.0.1/x'],
    ['the unspecified address', 'https://0.0.0.0/x'],
    ['the unspecified IPv6 address', 'https://[::]/x'],
    ['an IPv4 address written in hex, which URL parsing turns into 10.0.0.1', 'https://0x0a000001/x'],
  ])('refuses %s with 422 (%s)', async (_why, url) => {
    const human = await newPrincipal();
    const res = await addEndpoint(human, url);
    expect(res.status).toBe(422);
  });

  it('accepts a public host name that merely starts with “fc” or “fd” (only IPv6 fc00::/7 is private), and global address literals', async () => {
    const human = await newPrincipal();
    for (const url of ['https://fdic.example/hook', 'https://fcm.example/hook', 'https://[2606:4700::1111]/hook', 'https://1.1.1.1/hook']) {
      const res = await addEndpoint(human, url);
      expect(res.status, `${url}: ${await res.clone().text()}`).toBe(201);
    }
  });

  it('needs the CSRF token and a human: 403 csrf_failed without it, 403 human_required for an agent, 401 signed out', async () => {
    const { human, agent } = await setup();
    const noCsrf = await addEndpoint(human, 'https://example.test/hook', { cookie: human.cookie, 'content-type': 'application/json' });
    expect(noCsrf.status).toBe(403);
    expect(await noCsrf.json()).toMatchObject({ code: 'csrf_failed' });
    const wrongCsrf = await addEndpoint(human, 'https://example.test/hook', { ...human.headers(), 'x-csrf-token': 'wrong' });
    expect(await wrongCsrf.json()).toMatchObject({ status: 403, code: 'csrf_failed' });

    const byAgent = await agent.request('POST', '/v1/webhook_endpoints', { url: 'https://example.test/hook' });
    expect(byAgent.status).toBe(403);
    expect(await byAgent.json()).toMatchObject({ code: 'human_required' });

    const anonymous = await call('/v1/webhook_endpoints', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ url: 'https://example.test/hook' }) });
    expect(anonymous.status).toBe(401);

    // None of the refused requests added an endpoint.
    expect(await jsonLines(await call('/v1/audit?action=webhook_endpoint.create', { headers: { cookie: human.cookie } }))).toEqual([]);
  });
});

describe('webhookSignature', () => {
  it('is t=<unix>,v1=<hex HMAC-SHA256 of "t.body"> with the endpoint secret', () => {
    const secret = 'whsec_test_secret';
    const body = JSON.stringify({ id: 'ntf_1', type: 'budget.alert', created: '2026-11-01T00:00:00.000Z', data: { threshold: 50 } });
    const t = 1_790_000_000;
    const expected = createHmac('sha256', secret).update(`${t}.${body}`, 'utf8').digest('hex');
    expect(webhookSignature(secret, body, t)).toBe(`t=${t},v1=${expected}`);
    expect(expected).toMatch(/^[0-9a-f]{64}$/);
    // Another secret, another time or another body gives another signature.
    expect(webhookSignature('whsec_other', body, t)).not.toBe(`t=${t},v1=${expected}`);
    expect(webhookSignature(secret, `${body} `, t)).not.toBe(`t=${t},v1=${expected}`);
    expect(webhookSignature(secret, body, t + 1)).not.toContain(expected);
  });

  it('signs UTF-8 bodies and defaults t to now', () => {
    const secret = 'whsec_ü';
    const body = '{"note":"café ☕"}';
    const signature = webhookSignature(secret, body);
    const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(signature);
    expect(match).not.toBeNull();
    const t = Number(match![1]);
    expect(Math.abs(t - Math.floor(Date.now() / 1000))).toBeLessThanOrEqual(5);
    expect(match![2]).toBe(createHmac('sha256', Buffer.from(secret, 'utf8')).update(Buffer.from(`${t}.${body}`, 'utf8')).digest('hex'));
  });
});
