// The charges API (PROTOCOL.md §3.1 step 3, §3.2) as providers call it.
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { auditEvents, verifyAuditTrail } from '../../workers/lib/audit-trail';
import type { AuditEvent } from '../../workers/lib/audit';
import { asProvider, chargeBody, PROVIDER_URL, providerReceipt, providerToken, signedAgentRequest, subjectAt } from '../support/fake-provider';
import { activeMandate, call, chargeMadeDaysAgo, mandateBody, newPrincipal, notificationsOf, signedIn, type Human } from '../support/orchestrator-client';
import { standInCatalog } from '../support/stand-ins';
import { forgetProviderCatalogs } from '../../workers/orchestrator/provider-catalogs';

const testEnv = env as unknown as TestEnv & { PROVIDER_CLOUD: Fetcher };
const ledgerOf = (id: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(id));

async function setup(overrides: Record<string, unknown> = {}, human?: Human) {
  const h = human ?? (await newPrincipal());
  const { agent, mandate_id } = await activeMandate(h, undefined, overrides);
  const sub = await subjectAt(agent, mandate_id, 'cloud');
  const body = (input: Partial<Parameters<typeof chargeBody>[1]> = {}) =>
    chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount: 1044, ...input });
  return { human: h, agent, mandate_id, sub, body };
}

describe('authorize, capture, void', () => {
  it('authorizes a charge the agent signed for, then captures it once', async () => {
    const { human, body } = await setup();
    const res = await asProvider('cloud', 'POST', '/v1/charges', await body());
    expect(res.status).toBe(201);
    const charge = (await res.json()) as { charge_id: string; status: string; hold_expires_at: string; amount: number };
    expect(charge).toMatchObject({ status: 'authorized', amount: 1044, currency: 'usd', provider: 'cloud', service: 'domain' });
    expect(Date.parse(charge.hold_expires_at)).toBeGreaterThan(Date.now());
    const captured = await asProvider('cloud', 'POST', `/v1/charges/${charge.charge_id}/capture`, {});
    expect(await captured.json()).toMatchObject({ charge_id: charge.charge_id, status: 'captured' });
    // Capturing twice changes nothing; voiding a captured charge is refused.
    expect(((await (await asProvider('cloud', 'POST', `/v1/charges/${charge.charge_id}/capture`, {})).json()) as { status: string }).status).toBe('captured');
    expect((await asProvider('cloud', 'POST', `/v1/charges/${charge.charge_id}/void`, {})).status).toBe(409);
    const voids: AuditEvent[] = [];
    for await (const e of auditEvents(ledgerOf(human.principal_id), testEnv.DB, human.principal_id, 0, { action: 'charge.void' })) voids.push(e);
    expect(voids).toEqual([expect.objectContaining({ target: charge.charge_id, outcome: 'refused', reason: 'charge_captured' })]);
    // The principal reads it.
    const read = await call(`/v1/charges/${charge.charge_id}`, { headers: { cookie: human.cookie } });
    expect(((await read.json()) as { status: string }).status).toBe('captured');
  });

  it('answers a capture after a void with 409 charge_voided, and the spend is released', async () => {
    const { human, body } = await setup();
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', await body())).json()) as { charge_id: string };
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(1044);
    expect(((await (await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/void`, { reason: 'provision failed' })).json()) as { status: string }).status).toBe('voided');
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(0);
    const late = await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, {});
    expect(late.status).toBe(409);
    expect(await late.json()).toMatchObject({ code: 'charge_voided' });
  });

  it('refuses a capture that comes after the hold’s time, even before the alarm voided it: 409 charge_voided, spend released', async () => {
    const { human, body } = await setup();
    const charge = (await (await asProvider('cloud', 'POST', '/v1/charges', await body())).json()) as { charge_id: string };
    await runInDurableObject(ledgerOf(human.principal_id), (_, state) => void state.storage.sql.exec('UPDATE holds SET expires_at = ? WHERE id = ?', Date.now() - 1, charge.charge_id));
    const late = await asProvider('cloud', 'POST', `/v1/charges/${charge.charge_id}/capture`, {});
    expect(late.status).toBe(409);
    expect(((await late.json()) as { code: string }).code).toBe('charge_voided');
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(0);
    expect((await ledgerOf(human.principal_id).getCharge(charge.charge_id))?.status).toBe('voided');
  });

  it('returns the same charge for the same provider idempotency key', async () => {
    const { body } = await setup();
    const request = await body({ key: 'saga-1' });
    const first = (await (await asProvider('cloud', 'POST', '/v1/charges', request)).json()) as { charge_id: string };
    const again = (await (await asProvider('cloud', 'POST', '/v1/charges', request)).json()) as { charge_id: string };
    expect(again.charge_id).toBe(first.charge_id);
  });

  it('refuses the same provider idempotency key for another charge with 422, and holds nothing more', async () => {
    const { human, body } = await setup();
    const first = await asProvider('cloud', 'POST', '/v1/charges', await body({ key: 'saga-2', amount: 1044 }));
    expect(first.status).toBe(201);
    const other = await asProvider('cloud', 'POST', '/v1/charges', await body({ key: 'saga-2', amount: 1200, plan: 'dev-1y' }));
    expect(other.status).toBe(422);
    expect(((await other.json()) as { code: string }).code).toBe('idempotency_key_reused');
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(1044);
  });
});

describe('a provider finding its charge by key (an authorization whose answer it never got)', () => {
  it('finds its own charge for the principal by idempotency key, nobody else’s, and voids it', async () => {
    const { human, sub, body } = await setup();
    const request = await body({ key: 'op_lost-answer' });
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', request)).json()) as { charge_id: string };
    const lookup = (provider: 'cloud' | 'data', query: Record<string, string>) => asProvider(provider, 'GET', `/v1/charges?${new URLSearchParams(query)}`);

    const found = await lookup('cloud', { principal_sub: sub, idempotency_key: 'op_lost-answer' });
    expect(found.status).toBe(200);
    expect(await found.json()).toEqual({ data: [expect.objectContaining({ charge_id, status: 'authorized', provider: 'cloud' })], has_more: false });
    // Another key, another provider (whose subject for the principal differs), a subject nobody has: nothing.
    for (const [provider, query] of [
      ['cloud', { principal_sub: sub, idempotency_key: 'op_other' }],
      ['data', { principal_sub: sub, idempotency_key: 'op_lost-answer' }],
      ['cloud', { principal_sub: 'sub_nobody', idempotency_key: 'op_lost-answer' }],
    ] as const) {
      expect(await (await lookup(provider, query)).json()).toEqual({ data: [], has_more: false });
    }
    // Both names are required of a provider; a token for another path is refused.
    expect((await lookup('cloud', { principal_sub: sub })).status).toBe(422);
    expect((await asProvider('cloud', 'GET', `/v1/charges?principal_sub=${sub}&idempotency_key=op_lost-answer`, undefined, { htu: 'http://127.0.0.1:8787/v1/limits' })).status).toBe(401);

    expect((await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/void`, { reason: 'authorization_answer_lost' })).status).toBe(200);
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(0);
    // The principal's own listing is unchanged by the provider's way in.
    const listed = (await (await call('/v1/charges', { headers: { cookie: human.cookie } })).json()) as { data: { charge_id: string; status: string }[] };
    expect(listed.data).toEqual([expect.objectContaining({ charge_id, status: 'voided' })]);
  });
});

describe('text that is not well-formed Unicode', () => {
  it('is refused with 400 where it would reach the trail or a signed hash, and changes nothing', async () => {
    const { human, agent, body } = await setup();
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', await body())).json()) as { charge_id: string };
    await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, {});
    const refund = await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/refund`, { amount: 100, currency: 'usd', reason: 'credit \ud800', idempotency_key: 'r1' });
    expect(refund.status).toBe(400);
    expect(await refund.json()).toMatchObject({ code: 'invalid_request' });
    expect((await ledgerOf(human.principal_id).getCharge(charge_id))?.refunded).toBe(0);
    const mandates = (await ledgerOf(human.principal_id).listMandates()).length;
    const request = await agent.request('POST', '/v1/mandates', mandateBody({ description: 'domains \udfff' }));
    expect(request.status).toBe(400);
    expect((await ledgerOf(human.principal_id).listMandates()).length).toBe(mandates);
  });
});

describe('the checks, in order, each a 402 with what a human needs to step up', () => {
  it('refuses beyond max_per_charge with limit, spent, requested and step_up_url', async () => {
    const { mandate_id, body } = await setup();
    const res = await asProvider('cloud', 'POST', '/v1/charges', await body({ amount: 2500 }));
    expect(res.status).toBe(402);
    expect(await res.json()).toMatchObject({
      code: 'spend_limit_exceeded',
      limit: { amount: 2000, currency: 'usd' },
      requested: { amount: 2500, currency: 'usd' },
      step_up_url: `http://127.0.0.1:8787/mandates/${mandate_id}/approval`,
    });
  });

  it('refuses a service outside the mandate with out_of_scope', async () => {
    const { body } = await setup();
    const res = await asProvider('cloud', 'POST', '/v1/charges', await body({ service: 'workers-paid', plan: 'paid', amount: 500 }));
    expect(res.status).toBe(402);
    expect(await res.json()).toMatchObject({ code: 'out_of_scope' });
  });

  it('refuses once the mandate’s monthly limit is spent', async () => {
    const { body } = await setup({ spend_limit: { amount: 3000, currency: 'usd', period: 'month' } });
    for (let i = 0; i < 2; i++) expect((await asProvider('cloud', 'POST', '/v1/charges', await body())).status).toBe(201);
    const res = await asProvider('cloud', 'POST', '/v1/charges', await body());
    expect(await res.json()).toMatchObject({ code: 'spend_limit_exceeded', limit: { amount: 3000 }, spent: { amount: 2088 }, requested: { amount: 1044 } });
  });

  it('sums the principal’s monthly limit across mandates and providers (re-approval never resets spend)', async () => {
    const human = await newPrincipal();
    const a = await setup({ spend_limit: { amount: 8000, currency: 'usd', period: 'month' }, scope: [{ provider: 'cloud', services: ['domain'] }] }, human);
    const b = await setup({ spend_limit: { amount: 8000, currency: 'usd', period: 'month' }, scope: [{ provider: 'cloud', services: ['domain'] }] }, human);
    for (let i = 0; i < 6; i++) expect((await asProvider('cloud', 'POST', '/v1/charges', await a.body())).status).toBe(201); // 6264
    for (let i = 0; i < 3; i++) expect((await asProvider('cloud', 'POST', '/v1/charges', await b.body())).status).toBe(201); // 9396
    const routes = async () => (await testEnv.DB.prepare('SELECT COUNT(*) AS n FROM charge_routes').first<{ n: number }>())!.n;
    const before = await routes();
    const res = await asProvider('cloud', 'POST', '/v1/charges', await b.body());
    expect(res.status).toBe(402);
    const declined = (await res.json()) as { step_up_url: string };
    expect(declined).toMatchObject({ code: 'spend_limit_exceeded', limit: { amount: 10_000 }, spent: { amount: 9396 }, step_up_url: 'http://127.0.0.1:8787/dashboard/limits' });
    // The refusal left nothing behind, not even the charge's route.
    expect(await routes()).toBe(before);
    // The step-up page is where the signed-in human raises the limit.
    const page = await call(new URL(declined.step_up_url).pathname, { headers: { cookie: human.cookie } });
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('action="/dashboard/limits"');
  });

  it('refuses charges against a revoked mandate with mandate_inactive', async () => {
    const { human, mandate_id, body } = await setup();
    const request = await body();
    await call(`/v1/mandates/${mandate_id}/revoke`, { method: 'POST', headers: human.headers() });
    const res = await asProvider('cloud', 'POST', '/v1/charges', request);
    expect(res.status).toBe(402);
    expect(await res.json()).toMatchObject({ code: 'mandate_inactive' });
  });

  it('refuses a charge that is not what the agent signed (another plan, another price)', async () => {
    const { body } = await setup();
    const otherPlan = { ...(await body()), plan: 'io-1y', amount: 1500 };
    expect(await (await asProvider('cloud', 'POST', '/v1/charges', otherPlan)).json()).toMatchObject({ status: 401, code: 'invalid_signature' });
    const otherPrice = { ...(await body({ expected: 1044 })), amount: 1500 };
    expect(await (await asProvider('cloud', 'POST', '/v1/charges', otherPrice)).json()).toMatchObject({ code: 'invalid_signature' });
  });
});

describe('a creation signed without expected_price: the price the provider publishes (§1, §3.1 step 3)', () => {
  const catalogOf = (status: number, prices: Record<string, Record<string, number>> = {}) =>
    testEnv.PROVIDER_CLOUD.fetch('http://provider/_test/catalog', { method: 'POST', body: JSON.stringify({ status, catalog: standInCatalog(prices) }) });
  const catalogReads = async () => (await (await testEnv.PROVIDER_CLOUD.fetch('http://provider/_test/catalog-reads')).json()) as { reads: number; not_modified: number };
  afterEach(async () => {
    forgetProviderCatalogs();
    await catalogOf(200, { domain: { 'com-1y': 1044 } });
  });

  it('is charged the catalog’s price, and nothing else: another amount is refused (audited), holding nothing', async () => {
    const { human, agent, body } = await setup();
    await catalogOf(200, { domain: { 'com-1y': 1044 } });
    const charged = (await (await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null }))).json()) as { charge_id: string };
    // The evidence says what price the charge rests on.
    expect(JSON.parse((await ledgerOf(human.principal_id).getCharge(charged.charge_id))!.evidence!)).toMatchObject({ published_price: { amount: 1044, currency: 'usd' } });
    const inflated = await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null, amount: 1500 }));
    expect(await inflated.json()).toMatchObject({ status: 401, code: 'invalid_signature' });
    const unlisted = await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null, plan: 'io-1y' }));
    expect(await unlisted.json()).toMatchObject({ status: 401, code: 'invalid_signature' });
    // A price signed as null is no price either.
    const nulled = await body({ expected: null, amount: 1500 });
    const signedNull = JSON.stringify({ ...JSON.parse(nulled.agent_request.body), expected_price: null });
    const withNull = await signedOtherwise(agent, nulled, 'POST', nulled.agent_request.target_uri, signedNull);
    expect(await (await asProvider('cloud', 'POST', '/v1/charges', withNull)).json()).toMatchObject({ status: 401, code: 'invalid_signature' });
    expect((await ledgerOf(human.principal_id).listCharges({})).map((c) => c.amount)).toEqual([1044]);
    const refusals: AuditEvent[] = [];
    for await (const e of auditEvents(ledgerOf(human.principal_id), testEnv.DB, human.principal_id, 0, { action: 'charge.authorize' })) if (e.outcome === 'refused') refusals.push(e);
    expect(refusals.map((e) => e.reason)).toEqual(['invalid_signature', 'invalid_signature', 'invalid_signature']);
  });

  it('is checked against the catalog as it is now when the kept copy disagrees: a new price is charged, the old one no longer', async () => {
    const { body } = await setup();
    await catalogOf(200, { domain: { 'com-1y': 1044 } });
    expect((await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null }))).status).toBe(201);
    const reads = await catalogReads();
    expect((await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null }))).status).toBe(201);
    expect(await catalogReads()).toEqual(reads); // the kept copy answered
    await catalogOf(200, { domain: { 'com-1y': 1200 } });
    expect((await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null, amount: 1200 }))).status).toBe(201);
    expect((await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null }))).status).toBe(401);
  });

  it('is revalidated once its copy is a minute old: a 304 keeps it another minute', async () => {
    const { body } = await setup();
    expect((await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null }))).status).toBe(201);
    const before = await catalogReads();
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 61_000 });
    try {
      expect((await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null }))).status).toBe(201);
      expect(await catalogReads()).toEqual({ reads: before.reads + 1, not_modified: before.not_modified + 1 });
      expect((await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null }))).status).toBe(201);
      expect(await catalogReads()).toEqual({ reads: before.reads + 1, not_modified: before.not_modified + 1 });
    } finally {
      vi.useRealTimers();
    }
  });

  it('replays a charge already made under its key, whatever the catalog says now', async () => {
    const { human, body } = await setup();
    const first = await body({ expected: null });
    const made = (await (await asProvider('cloud', 'POST', '/v1/charges', first)).json()) as { charge_id: string };
    await catalogOf(200, { domain: { 'com-1y': 1200 } });
    forgetProviderCatalogs(); // read as it is now: the retry's price is no longer the published one
    const retried = await asProvider('cloud', 'POST', '/v1/charges', first);
    expect(retried.status).toBe(201);
    expect(((await retried.json()) as { charge_id: string }).charge_id).toBe(made.charge_id);
    await catalogOf(500);
    forgetProviderCatalogs();
    expect(((await (await asProvider('cloud', 'POST', '/v1/charges', first)).json()) as { charge_id: string }).charge_id).toBe(made.charge_id);
    expect(await ledgerOf(human.principal_id).listCharges({})).toHaveLength(1);
  });

  it('decides nothing while the catalog cannot be read: 503 with Retry-After, nothing held; a signed price needs no catalog', async () => {
    const { human, body } = await setup();
    await catalogOf(500);
    const res = await asProvider('cloud', 'POST', '/v1/charges', await body({ expected: null }));
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('30');
    expect(await res.json()).toMatchObject({ code: 'internal_error' });
    expect(await ledgerOf(human.principal_id).listCharges({})).toEqual([]);
    expect((await asProvider('cloud', 'POST', '/v1/charges', await body())).status).toBe(201);
  });
});

describe('provider authentication', () => {
  it('refuses a replayed, mis-bound or foreign provider token and unknown subjects', async () => {
    const { human, body } = await setup();
    const request = await body();
    expect((await asProvider('cloud', 'POST', '/v1/charges', request, { body_sha256: 'x' })).status).toBe(401);
    expect((await asProvider('cloud', 'POST', '/v1/charges', request, { htu: 'http://127.0.0.1:8787/v1/other' })).status).toBe(401);
    expect((await asProvider('cloud', 'POST', '/v1/charges', request, { jti: 'fixed-jti' })).status).toBe(201);
    const replay = await asProvider('cloud', 'POST', '/v1/charges', { ...request, idempotency_key: 'another' }, { jti: 'fixed-jti' });
    expect(replay.status).toBe(401);
    // The replay changed nothing but the trail, which says it was refused.
    const refusals: AuditEvent[] = [];
    for await (const e of auditEvents(ledgerOf(human.principal_id), testEnv.DB, human.principal_id, 0, { action: 'charge.authorize' })) if (e.outcome === 'refused') refusals.push(e);
    expect(refusals).toEqual([expect.objectContaining({ reason: 'replayed', related: expect.arrayContaining(['idempotency_key:another']) })]);
    expect(await ledgerOf(human.principal_id).listCharges({})).toHaveLength(1);
    // The sub is the principal's name at "cloud": at "data" it names nobody.
    expect((await asProvider('data', 'POST', '/v1/charges', request)).status).toBe(404);
    expect((await call('/v1/charges', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(request) })).status).toBe(401);
  });
});

describe('spend under concurrency', () => {
  it('commits exactly 100 of 1,000 concurrent $1 charges against a $100 limit, each audited, the chain intact', async () => {
    const { human, body } = await setup({
      spend_limit: { amount: 10_000, currency: 'usd', period: 'month' },
      scope: [{ provider: 'cloud', services: ['domain'] }],
    });
    const requests = await Promise.all(Array.from({ length: 1000 }, () => body({ amount: 100 })));
    // The principal's global ceiling of 100 charges an hour would decline before the money does: this is about money.
    const responses = await Promise.all(requests.map((r) => asProvider('cloud', 'POST', '/v1/charges', r)));
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(100);
    const declines = await Promise.all(responses.filter((r) => r.status !== 201).map((r) => r.json() as Promise<{ code: string }>));
    expect(declines).toHaveLength(900);
    expect(new Set(declines.map((d) => d.code))).toEqual(new Set(['spend_limit_exceeded']));
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(10_000);
    const authorized = await Promise.all(responses.filter((r) => r.status === 201).map((r) => r.json() as Promise<{ charge_id: string }>));
    const captures = await Promise.all(authorized.map((c) => asProvider('cloud', 'POST', `/v1/charges/${c.charge_id}/capture`, {})));
    expect(captures.every((r) => r.status === 200)).toBe(true);
    const charges = await ledgerOf(human.principal_id).listCharges({});
    expect(charges.filter((c) => c.status === 'captured')).toHaveLength(100);
    const events: AuditEvent[] = [];
    for await (const e of auditEvents(ledgerOf(human.principal_id), testEnv.DB, human.principal_id, 0, { action: 'charge.authorize' })) events.push(e);
    expect(events.filter((e) => e.outcome === 'succeeded')).toHaveLength(100);
    expect(events.filter((e) => e.outcome === 'refused')).toHaveLength(900);
    expect(await verifyAuditTrail(ledgerOf(human.principal_id), testEnv.DB, human.principal_id)).toMatchObject({ ok: true, first_broken_seq: null });
  }, 120_000);

  it('holds one monthly limit across two providers: 1,000 concurrent charges at cloud and data, exactly 100 fit', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human, undefined, {
      spend_limit: { amount: 10_000, currency: 'usd', period: 'month' },
      scope: [
        { provider: 'cloud', services: ['domain'] },
        { provider: 'data', services: ['database'] },
      ],
    });
    const subs = { cloud: await subjectAt(agent, mandate_id, 'cloud'), data: await subjectAt(agent, mandate_id, 'data') };
    const requests = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        const provider = i % 2 ? ('data' as const) : ('cloud' as const);
        const service = provider === 'cloud' ? { service: 'domain', plan: 'com-1y' } : { service: 'database', plan: 'pro' };
        return { provider, body: await chargeBody(agent.key, { provider, mandate_id, agent_id: agent.agent_id, sub: subs[provider], ...service, amount: 100 }) };
      }),
    );
    const responses = await Promise.all(requests.map((r) => asProvider(r.provider, 'POST', '/v1/charges', r.body)));
    expect(responses.filter((r) => r.status === 201)).toHaveLength(100);
    expect(responses.filter((r) => r.status === 402)).toHaveLength(900);
    const charges = await ledgerOf(human.principal_id).listCharges({});
    const byProvider = (p: string) => charges.filter((c) => c.provider === p && c.status === 'pending').reduce((sum, c) => sum + c.amount, 0);
    expect(byProvider('cloud') + byProvider('data')).toBe(10_000);
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(10_000);
  }, 120_000);
});

describe('renewals of recurring plans', () => {
  it('authorize on the strength of the captured charge they renew, and a declined one is told to the human', async () => {
    const { human, mandate_id, body } = await setup({ scope: [{ provider: 'cloud', services: ['domain'] }] });
    const first = { ...(await body()), resource_ref: 'res_renewed' };
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', first)).json()) as { charge_id: string };
    const { agent_request: _signed, ...rest } = first;
    const renewal = { ...rest, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: charge_id };
    // Not yet captured: nothing to renew. Nor is a renewal that names no resource: which one is what ties a chain together.
    expect((await asProvider('cloud', 'POST', '/v1/charges', renewal)).status).toBe(401);
    const unnamed = await asProvider('cloud', 'POST', '/v1/charges', { ...renewal, resource_ref: null });
    expect(await unnamed.json()).toMatchObject({ status: 422, code: 'invalid_request' });
    await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, {});
    // A year on (com-1y is billed yearly), the period it paid for has ended.
    await chargeMadeDaysAgo(human.principal_id, charge_id, 365);
    const renewed = await asProvider('cloud', 'POST', '/v1/charges', renewal);
    expect(renewed.status).toBe(201);
    const tried = ((await renewed.json()) as { charge_id: string }).charge_id;
    // The same renewal retried is the same charge. Another try while it is pending replaces it (the provider gave up on it).
    expect(((await (await asProvider('cloud', 'POST', '/v1/charges', renewal)).json()) as { charge_id: string }).charge_id).toBe(tried);
    const retried = await asProvider('cloud', 'POST', '/v1/charges', { ...renewal, idempotency_key: `renewal-${crypto.randomUUID()}` });
    expect(retried.status).toBe(201);
    const renewedId = ((await retried.json()) as { charge_id: string }).charge_id;
    expect(await (await asProvider('cloud', 'GET', `/v1/charges/${tried}`)).json()).toMatchObject({ status: 'voided' });
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(2 * first.amount);
    // Captured, it settles the period: a charge is renewed once, and another try is refused, audited.
    await asProvider('cloud', 'POST', `/v1/charges/${renewedId}/capture`, {});
    const again = await asProvider('cloud', 'POST', '/v1/charges', { ...renewal, idempotency_key: `renewal-${crypto.randomUUID()}` });
    expect(await again.json()).toMatchObject({ status: 401, code: 'invalid_signature', detail: expect.stringContaining('renewed once') });
    expect((await refusedAuthorizations(human)).map((e) => e.reason)).toEqual(['invalid_signature', 'invalid_signature']);
    // Another price than the renewed charge is not a renewal.
    expect((await asProvider('cloud', 'POST', '/v1/charges', { ...renewal, idempotency_key: 'other', amount: 2000 })).status).toBe(401);

    // The next period renews the renewal, not the charge it renewed; under a revoked mandate that is declined.
    await chargeMadeDaysAgo(human.principal_id, renewedId, 365);
    await call(`/v1/mandates/${mandate_id}/revoke`, { method: 'POST', headers: human.headers() });
    const declined = await asProvider('cloud', 'POST', '/v1/charges', { ...renewal, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: renewedId });
    expect(await declined.json()).toMatchObject({ status: 402, code: 'mandate_inactive' });
    // The provider tries the suspended renewal again: declined again, and audited, but the human is told once.
    const triedAgain = await asProvider('cloud', 'POST', '/v1/charges', { ...renewal, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: renewedId });
    expect(triedAgain.status).toBe(402);
    expect(await notificationsOf(human, 'renewal.declined')).toEqual([
      expect.objectContaining({ data: expect.objectContaining({ renewal_of: renewedId, code: 'mandate_inactive', service: 'domain' }) }),
    ]);
    expect((await refusedAuthorizations(human)).filter((e) => e.reason === 'mandate_inactive')).toHaveLength(2);
  });
});

describe('when a renewal is due: not before the period the renewed charge paid for has ended (renewal-periods.ts)', () => {
  const DAY = 24 * 60 * 60 * 1000;
  const catalogOf = async (billing: Record<string, 'one_time' | 'month' | 'year'>) => {
    forgetProviderCatalogs();
    await testEnv.PROVIDER_CLOUD.fetch('http://provider/_test/catalog', { method: 'POST', body: JSON.stringify({ status: 200, catalog: standInCatalog({ domain: { 'com-1y': 1044 } }, billing) }) });
  };
  afterEach(() => catalogOf({}));

  /** A captured charge of the yearly `com-1y`, made `daysAgo` days back, kept with a receipt stating `periodEnd` (or none); and its renewal's body. */
  async function renewable(daysAgo: number, periodEnd: number | null) {
    const { human: h, agent, mandate_id, body } = await setup({ spend_limit: { amount: 10_000, currency: 'usd', period: 'month' }, scope: [{ provider: 'cloud', services: ['domain'] }] });
    const first = { ...(await body()), resource_ref: `res_${crypto.randomUUID()}` };
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', first)).json()) as { charge_id: string };
    await chargeMadeDaysAgo(h.principal_id, charge_id, daysAgo);
    const claims = { charge_id, agent_id: agent.agent_id, mandate_id, amount: 1044, currency: 'usd' };
    const receipt = periodEnd === null ? {} : { receipt: await providerReceipt('cloud', { ...claims, period_end: new Date(periodEnd).toISOString() }) };
    expect((await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, receipt)).status).toBe(200);
    const { agent_request: _signed, ...rest } = first;
    const renewal = (renewed = charge_id, over: Record<string, unknown> = {}) => ({ ...rest, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: renewed, ...over });
    const madeAt = (await ledgerOf(h.principal_id).getCharge(charge_id))!.created;
    return { human: h, agent, mandate_id, charge_id, madeAt, renewal, claims };
  }
  const ask = async (body: Record<string, unknown>) => {
    const res = await asProvider('cloud', 'POST', '/v1/charges', body);
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as { code?: string; renews_at?: string; charge_id?: string } };
  };

  it('is 409 renewal_not_due a year less a day after a yearly plan’s charge was made (audited, nothing held), and then taken', async () => {
    const recent = await renewable(100, null);
    const refused = await ask(recent.renewal());
    expect(refused).toMatchObject({ status: 409, body: { code: 'renewal_not_due', renews_at: new Date(recent.madeAt + 364 * DAY).toISOString() } });
    expect(Number(refused.retryAfter)).toBeGreaterThan(263 * 24 * 60 * 60);
    expect((await refusedAuthorizations(recent.human)).map((e) => e.reason)).toEqual(['renewal_not_due']);
    expect(await ledgerOf(recent.human.principal_id).spentThisPeriod()).toBe(1044);
    // A receipt stating an earlier end gains nothing: the period still lasts the shortest a year can.
    const short = await renewable(100, Date.now() - 50 * DAY);
    expect((await ask(short.renewal())).body).toMatchObject({ code: 'renewal_not_due', renews_at: new Date(short.madeAt + 364 * DAY).toISOString() });
    expect((await ask((await renewable(365, null)).renewal())).status).toBe(201);
  });

  it('waits for a later end the receipt states, give or take a provider’s clock', async () => {
    const periodEnd = Date.now() + 10 * 60 * 1000;
    const later = await renewable(365, periodEnd);
    expect((await ask(later.renewal())).body).toMatchObject({ code: 'renewal_not_due', renews_at: new Date(periodEnd).toISOString() });
    // Two minutes ahead of the end is within a provider's clock running ahead of ours.
    const onTime = await renewable(365, Date.now() + 2 * 60 * 1000);
    expect((await ask(onTime.renewal())).status).toBe(201);
  });

  it('advances a renewal chain one period per renewal, whatever its receipts state', async () => {
    const due = await renewable(365, null);
    const renewed = await ask(due.renewal());
    expect(renewed.status).toBe(201);
    const renewalId = renewed.body.charge_id!;
    // Its receipt says its period is long over; the orchestrator knows the renewal was made just now.
    const receipt = await providerReceipt('cloud', { ...due.claims, charge_id: renewalId, period_end: new Date(Date.now() - DAY).toISOString() });
    expect((await asProvider('cloud', 'POST', `/v1/charges/${renewalId}/capture`, { receipt })).status).toBe(200);
    const madeAt = (await ledgerOf(due.human.principal_id).getCharge(renewalId))!.created;
    expect((await ask(due.renewal(renewalId))).body).toMatchObject({ code: 'renewal_not_due', renews_at: new Date(madeAt + 364 * DAY).toISOString() });
  });

  it('keeps the billing the plan had when the charge was made: a catalog that says month later does not shorten a year', async () => {
    const yearly = await renewable(100, null);
    await catalogOf({ 'com-1y': 'month' });
    expect((await ask(yearly.renewal())).body).toMatchObject({ code: 'renewal_not_due', renews_at: new Date(yearly.madeAt + 364 * DAY).toISOString() });
  });

  it('renews no plan that was one-time when its charge was made, whatever the catalog says later', async () => {
    await catalogOf({ 'com-1y': 'one_time' });
    const once = await renewable(400, null);
    await catalogOf({ 'com-1y': 'month' });
    expect((await ask(once.renewal())).body).toMatchObject({ code: 'invalid_signature', detail: expect.stringContaining('not a recurring plan') });
  });

  it('does not slow charges while the catalog is down: a charge is made without its billing, which the catalog says at renewal', async () => {
    const reads = async () => ((await (await testEnv.PROVIDER_CLOUD.fetch('http://provider/_test/catalog-reads')).json()) as { reads: number }).reads;
    forgetProviderCatalogs();
    await testEnv.PROVIDER_CLOUD.fetch('http://provider/_test/catalog', { method: 'POST', body: JSON.stringify({ status: 503, catalog: null }) });
    const before = await reads();
    const unknown = await renewable(100, null);
    await renewable(100, null);
    // One read failed; the next charge did not wait on another.
    expect((await reads()) - before).toBe(1);
    expect(JSON.parse((await ledgerOf(unknown.human.principal_id).getCharge(unknown.charge_id))!.evidence!)).not.toHaveProperty('billing');
    // At renewal, still down: 503, nothing held; then the catalog's word (yearly) bounds it.
    expect((await ask(unknown.renewal())).status).toBe(503);
    await catalogOf({});
    expect((await ask(unknown.renewal())).body).toMatchObject({ code: 'renewal_not_due', renews_at: new Date(unknown.madeAt + 364 * DAY).toISOString() });
  });

  it('takes a renewal under the mandate the charge was made under after a human re-approved it (the chain’s current link decides)', async () => {
    const due = await renewable(365, null);
    const scope = [{ provider: 'cloud', services: ['domain'] }];
    const successor = await activeMandate(due.human, due.agent, { supersedes: due.mandate_id, scope, spend_limit: { amount: 8000, currency: 'usd', period: 'month' } });
    // Another mandate of the same agent, with its own scope and limit, did not agree to pay for this resource.
    const other = await activeMandate(due.human, due.agent, { scope, spend_limit: { amount: 9000, currency: 'usd', period: 'month' } });
    expect(await ask(due.renewal(due.charge_id, { mandate_id: other.mandate_id }))).toMatchObject({ status: 401, body: { code: 'invalid_signature' } });
    const renewal = due.renewal();
    const renewed = await ask(renewal);
    expect(renewed.status, JSON.stringify(renewed.body)).toBe(201);
    expect(renewed.body).toMatchObject({ mandate_id: successor.mandate_id });
    // Its receipt may name the link it was decided under or the one the provider asked under; no other.
    const claims = { ...due.claims, charge_id: renewed.body.charge_id };
    const capture = async (mandate: string) => (await asProvider('cloud', 'POST', `/v1/charges/${renewed.body.charge_id}/capture`, { receipt: await providerReceipt('cloud', { ...claims, mandate_id: mandate }) })).status;
    expect(await capture(other.mandate_id)).toBe(422);
    expect(await capture(due.mandate_id)).toBe(200);
    // Retried under its key after the chain moved on again, it is the same charge, replayed.
    await activeMandate(due.human, due.agent, { supersedes: successor.mandate_id, scope });
    expect(await ask(renewal)).toMatchObject({ status: 201, body: { charge_id: renewed.body.charge_id, mandate_id: successor.mandate_id } });
  });

  it('declines a renewal under the successor’s limit, and sends the human to step up on the successor, not the mandate it superseded', async () => {
    const due = await renewable(365, null);
    // The human re-approves with a lower limit than this period's spend plus a renewal.
    const successor = await activeMandate(due.human, due.agent, { supersedes: due.mandate_id, scope: [{ provider: 'cloud', services: ['domain'] }], spend_limit: { amount: 2000, currency: 'usd', period: 'month' } });
    const declined = await asProvider('cloud', 'POST', '/v1/charges', due.renewal());
    expect(await declined.json()).toMatchObject({ status: 402, code: 'spend_limit_exceeded', step_up_url: expect.stringContaining(`/mandates/${successor.mandate_id}/approval`) });
  });

  it('holds a monthly plan to 27 days', async () => {
    await catalogOf({ 'com-1y': 'month' });
    const monthly = await renewable(26, null);
    expect((await ask(monthly.renewal())).body).toMatchObject({ code: 'renewal_not_due', renews_at: new Date(monthly.madeAt + 27 * DAY).toISOString() });
    expect((await ask((await renewable(28, null)).renewal())).status).toBe(201);
  });

  it('reads a receipt’s period_end at capture: one that is not an RFC 3339 date-time is 422, the charge still authorized; after a void, the answer is the void', async () => {
    const { human, agent, mandate_id, body } = await setup({ scope: [{ provider: 'cloud', services: ['domain'] }] });
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', await body())).json()) as { charge_id: string };
    const claims = { charge_id, agent_id: agent.agent_id, mandate_id, amount: 1044, currency: 'usd' };
    for (const period_end of ['next month', '2027', Date.now() + 365 * DAY]) {
      const refused = await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, { receipt: await providerReceipt('cloud', { ...claims, period_end }) });
      expect(await refused.json()).toMatchObject({ status: 422, code: 'invalid_request' });
    }
    expect((await ledgerOf(human.principal_id).getCharge(charge_id))!.status).toBe('pending');
    await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/void`, {});
    const late = await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, { receipt: await providerReceipt('cloud', { ...claims, period_end: 'never' }) });
    expect(await late.json()).toMatchObject({ status: 409, code: 'charge_voided' });
  });

  it('tells the human, once, two weeks before a mandate ends, of the recurring plans it pays for that will not renew after it', async () => {
    const paying = await renewable(10, null);
    // A mandate that pays for nothing recurring (a plan sold one time) is not worth a notice.
    await catalogOf({ 'com-1y': 'one_time' });
    const { human: idle, body } = await setup({ scope: [{ provider: 'cloud', services: ['domain'] }] });
    const { charge_id: once } = (await (await asProvider('cloud', 'POST', '/v1/charges', { ...(await body()), resource_ref: `res_${crypto.randomUUID()}` })).json()) as { charge_id: string };
    expect((await asProvider('cloud', 'POST', `/v1/charges/${once}/capture`, {})).status).toBe(200);
    const { expires_at } = (await (await call(`/v1/mandates/${paying.mandate_id}`, { headers: { cookie: paying.human.cookie } })).json()) as { expires_at: string };
    const expiring = async (human: Human) => notificationsOf(await signedIn(human), 'mandate.expiring');
    /** The notice task run now, whenever it is due. */
    const lookNow = async (human: Human) => {
      const ledger = ledgerOf(human.principal_id);
      await runInDurableObject(ledger, async (_, s) => {
        s.storage.sql.exec(`INSERT INTO schedule (task, due_at) VALUES ('mandate_expiry', 0) ON CONFLICT (task) DO UPDATE SET due_at = 0`);
        await s.storage.setAlarm(Date.now());
      });
      await runDurableObjectAlarm(ledger);
    };
    try {
      vi.useFakeTimers({ toFake: ['Date'] });
      // Three weeks before: not yet.
      vi.setSystemTime(Date.parse(expires_at) - 21 * DAY);
      await lookNow(paying.human);
      expect(await expiring(paying.human)).toEqual([]);
      vi.setSystemTime(Date.parse(expires_at) - 13 * DAY);
      await lookNow(paying.human);
      await lookNow(paying.human);
      await lookNow(idle);
      const resource_ref = (await ledgerOf(paying.human.principal_id).getCharge(paying.charge_id))!.resource_ref;
      expect(await expiring(paying.human)).toEqual([
        expect.objectContaining({ data: { mandate_id: paying.mandate_id, expires_at, resources: [{ provider: 'cloud', service: 'domain', plan: 'com-1y', resource_ref }] } }),
      ]);
      expect(await expiring(idle)).toEqual([]);
      const trail = await (await call('/v1/audit', { headers: { cookie: (await signedIn(paying.human)).cookie } })).text();
      expect(trail.split('\n').filter((line) => line.includes('"mandate.expiring"'))).toHaveLength(1);
    } finally {
      vi.useRealTimers();
    }
  });
});

describe('a renewal try that replaces one the provider gave up on', () => {
  it('is decided as if the earlier try never counted: room for one renewal is enough, and no alert fires early', async () => {
    // Room for the charge and one renewal of it (2 × 1044 ≤ 3000), not for a third hold on top.
    const { human, body } = await setup({ spend_limit: { amount: 3000, currency: 'usd', period: 'month' }, scope: [{ provider: 'cloud', services: ['domain'] }] });
    const first = { ...(await body()), resource_ref: 'res_renewing' };
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', first)).json()) as { charge_id: string };
    await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, {});
    await chargeMadeDaysAgo(human.principal_id, charge_id, 365);
    const { agent_request: _signed, ...rest } = first;
    const renewal = () => ({ ...rest, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: charge_id });
    const lost = (await (await asProvider('cloud', 'POST', '/v1/charges', renewal())).json()) as { charge_id: string };
    const budgetAlerts = async () => ((await (await call('/v1/notifications', { headers: { cookie: human.cookie } })).json()) as { data: { type: string }[] }).data.filter((n) => n.type === 'budget.alert').length;
    const alertsBefore = await budgetAlerts();
    const replacing = await asProvider('cloud', 'POST', '/v1/charges', renewal());
    expect(replacing.status, JSON.stringify(await replacing.clone().json())).toBe(201);
    expect(await (await asProvider('cloud', 'GET', `/v1/charges/${lost.charge_id}`)).json()).toMatchObject({ status: 'voided' });
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(2 * 1044);
    expect(await budgetAlerts()).toBe(alertsBefore);
  });
});

describe('receipts on capture (§4)', () => {
  it('verifies the provider’s receipt against its published key and keeps it with the charge', async () => {
    const { human, agent, mandate_id, body } = await setup();
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', await body())).json()) as { charge_id: string };
    const claims = { charge_id, resource_id: 'res_x', agent_id: agent.agent_id, mandate_id, amount: 1044, currency: 'usd', constraint_results: [] };
    const other = await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']) as CryptoKeyPair;
    const forged = await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, { receipt: await providerReceipt('cloud', claims, other.privateKey) });
    expect(await forged.json()).toMatchObject({ status: 422, code: 'invalid_request' });
    const wrong = await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, { receipt: await providerReceipt('cloud', { ...claims, amount: 1 }) });
    expect(wrong.status).toBe(422);
    const receipt = await providerReceipt('cloud', claims);
    const captured = (await (await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, { receipt })).json()) as { status: string; receipt: string };
    expect(captured).toMatchObject({ status: 'captured', receipt });
    const read = (await (await call(`/v1/charges/${charge_id}`, { headers: { cookie: human.cookie } })).json()) as { receipt: string };
    expect(read.receipt).toBe(receipt);
  });
});

/** The same charge around another call the agent signed: `method target` with `body`. */
async function signedOtherwise<T extends object>(agent: Awaited<ReturnType<typeof setup>>['agent'], charge: T, method: 'POST' | 'PATCH' | 'DELETE', target: string, body: string) {
  return { ...charge, agent_request: await signedAgentRequest(agent.key, method, target, body) };
}

async function refusedAuthorizations(human: Human) {
  const refusals: AuditEvent[] = [];
  for await (const e of auditEvents(ledgerOf(human.principal_id), testEnv.DB, human.principal_id, 0, { action: 'charge.authorize' })) if (e.outcome === 'refused') refusals.push(e);
  return refusals;
}

describe('what backs a charge: one paid call the agent signed (§3.1 step 3)', () => {
  it('refuses a charge on a signed DELETE or on a signed call to another path, audited, holding nothing', async () => {
    const { human, agent, body } = await setup();
    const charge = await body({ service: 'worker-script', plan: 'free', amount: 1500 });
    const resource = `${PROVIDER_URL.cloud}/v1/resources/res_whatever`;
    const attempts = [
      await signedOtherwise(agent, charge, 'DELETE', resource, ''),
      await signedOtherwise(agent, charge, 'DELETE', resource, JSON.stringify({ service: 'worker-script', plan: 'free' })),
      await signedOtherwise(agent, charge, 'POST', `${resource}/rotate`, JSON.stringify({ service: 'worker-script', plan: 'free' })),
      await signedOtherwise(agent, charge, 'POST', `${PROVIDER_URL.cloud}/v1/resources?x=1`, JSON.stringify({ service: 'worker-script', plan: 'free' })),
    ];
    for (const attempt of attempts) {
      const res = await asProvider('cloud', 'POST', '/v1/charges', attempt);
      expect(await res.json(), `${attempt.agent_request.method} ${attempt.agent_request.target_uri}`).toMatchObject({ status: 401, code: 'invalid_signature' });
    }
    expect(await ledgerOf(human.principal_id).listCharges({})).toHaveLength(0);
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(0);
    expect((await refusedAuthorizations(human)).map((e) => e.reason)).toEqual(attempts.map(() => 'invalid_signature'));
  });

  it('refuses a signed body that is not a JSON object like any other mismatch, never a 500', async () => {
    const { human, agent, body } = await setup();
    const charge = await body();
    const resources = `${PROVIDER_URL.cloud}/v1/resources`;
    for (const signedBody of ['null', '[]', '"domain"', '42', '']) {
      const res = await asProvider('cloud', 'POST', '/v1/charges', await signedOtherwise(agent, charge, 'POST', resources, signedBody));
      expect(await res.json(), signedBody).toMatchObject({ status: 401, code: 'invalid_signature' });
    }
    const patch = { ...charge, resource_ref: 'res_pc' };
    const res = await asProvider('cloud', 'POST', '/v1/charges', await signedOtherwise(agent, patch, 'PATCH', `${resources}/res_pc`, 'null'));
    expect(await res.json()).toMatchObject({ status: 401, code: 'invalid_signature' });
    expect(await ledgerOf(human.principal_id).listCharges({})).toHaveLength(0);
  });

  it('lets one signed request back one charge: its retry by key replays it, another key is 401 replayed (audited), nothing more held', async () => {
    const { human, body } = await setup();
    const request = await body({ key: 'saga-once' });
    const first = await asProvider('cloud', 'POST', '/v1/charges', request);
    expect(first.status).toBe(201);
    const { charge_id } = (await first.json()) as { charge_id: string };

    const second = await asProvider('cloud', 'POST', '/v1/charges', { ...request, idempotency_key: 'saga-twice' });
    expect(second.status).toBe(401);
    expect(await second.json()).toMatchObject({ code: 'replayed' });
    // The provider's retry of the first charge (its answer lost) is still that charge.
    const retry = await asProvider('cloud', 'POST', '/v1/charges', request);
    expect(retry.status).toBe(201);
    expect(((await retry.json()) as { charge_id: string }).charge_id).toBe(charge_id);

    expect(await ledgerOf(human.principal_id).listCharges({})).toEqual([expect.objectContaining({ id: charge_id })]);
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(1044);
    expect(await refusedAuthorizations(human)).toEqual([expect.objectContaining({ reason: 'replayed', related: expect.arrayContaining(['idempotency_key:saga-twice']) })]);
  });

  it('uses nothing up on a refusal: a signed request declined over the limit backs a charge once spend is released', async () => {
    const { human, body } = await setup({ spend_limit: { amount: 3000, currency: 'usd', period: 'month' } });
    const [a] = await Promise.all([body(), body()].map(async (b) => (await (await asProvider('cloud', 'POST', '/v1/charges', await b)).json()) as { charge_id: string }));
    const request = await body();
    expect(await (await asProvider('cloud', 'POST', '/v1/charges', request)).json()).toMatchObject({ status: 402, code: 'spend_limit_exceeded' });
    expect((await asProvider('cloud', 'POST', `/v1/charges/${a!.charge_id}/void`, {})).status).toBe(200);
    expect((await asProvider('cloud', 'POST', '/v1/charges', { ...request, idempotency_key: 'after-decline' })).status).toBe(201);
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(2088);
  });
});

describe('the provider’s request token: ≤ 60 s from now, used once, reads included', () => {
  it('refuses a token issued in the future or expiring more than 60 s from now, on writes and reads', async () => {
    const { human, sub, body } = await setup();
    const now = Math.floor(Date.now() / 1000);
    const lookup = `/v1/charges?${new URLSearchParams({ principal_sub: sub, idempotency_key: 'k' })}`;
    for (const times of [
      { iat: now + 86_400, exp: now + 86_460 },
      { iat: now + 30, exp: now + 90 },
      { iat: now, exp: now + 120 },
    ]) {
      const write = await asProvider('cloud', 'POST', '/v1/charges', await body(), times);
      expect(await write.json(), JSON.stringify(times)).toMatchObject({ status: 401, code: 'unauthorized' });
      expect((await asProvider('cloud', 'GET', lookup, undefined, times)).status, JSON.stringify(times)).toBe(401);
    }
    expect(await ledgerOf(human.principal_id).listCharges({})).toHaveLength(0);
    // Within the clock tolerance it is taken.
    expect((await asProvider('cloud', 'GET', lookup, undefined, { iat: now + 2, exp: now + 62 })).status).toBe(200);
  });

  it('uses up the token of a read: a charge by id, and the lookup by key, whichever principal it names', async () => {
    const { sub, body } = await setup();
    const other = await setup();
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', await body())).json()) as { charge_id: string };
    expect((await asProvider('cloud', 'GET', `/v1/charges/${charge_id}`, undefined, { jti: `read-${charge_id}` })).status).toBe(200);
    const again = await asProvider('cloud', 'GET', `/v1/charges/${charge_id}`, undefined, { jti: `read-${charge_id}` });
    expect(again.status).toBe(401);
    expect(await again.json()).toMatchObject({ code: 'replayed' });

    const jti = `lookup-${charge_id}`;
    const lookup = (principalSub: string) => asProvider('cloud', 'GET', `/v1/charges?${new URLSearchParams({ principal_sub: principalSub, idempotency_key: 'k' })}`, undefined, { jti });
    expect((await lookup(sub)).status).toBe(200);
    expect(await (await lookup(sub)).json()).toMatchObject({ status: 401, code: 'replayed' });
    // The query is outside the token's htu: another principal's subject is the same token used again.
    expect(await (await lookup(other.sub)).json()).toMatchObject({ status: 401, code: 'replayed' });
  });
});

describe('authentication before the body (PROTOCOL.md Conventions)', () => {
  const anonymous = (path: string, init: RequestInit = {}) => call(path, init);
  const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  it('answers 401 to a caller without credentials whatever its body or query', async () => {
    const long = 'x'.repeat(201);
    for (const [path, init] of [
      ['/v1/charges', json({})],
      ['/v1/charges', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' }],
      ['/v1/charges', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' }],
      ['/v1/charges?period=bad', {}],
      ['/v1/charges/not-a-charge', {}],
      ['/v1/charges/chg_x/capture', json({ reason: long })],
      ['/v1/charges/chg_x/void', json({ reason: long })],
      ['/v1/charges/chg_x/void', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'void' }],
    ] as const) {
      const res = await anonymous(path, init as RequestInit);
      expect(await res.json(), `${(init as RequestInit).method ?? 'GET'} ${path}`).toMatchObject({ status: 401, code: 'unauthorized' });
    }
  });

  it('validates the body of an authenticated provider as before: 422 with the fields, 415 for another media type', async () => {
    const invalid = await asProvider('cloud', 'POST', '/v1/charges', {});
    expect(invalid.status).toBe(422);
    expect(await invalid.json()).toMatchObject({ code: 'invalid_request', errors: expect.arrayContaining([expect.objectContaining({ path: '/mandate_id' })]) });
    const text = await call('/v1/charges', { method: 'POST', headers: { authorization: `Bearer ${await providerToken('cloud', 'POST', '/v1/charges', 'hello')}`, 'content-type': 'text/plain' }, body: 'hello' });
    expect(text.status).toBe(415);
    expect(await text.json()).toMatchObject({ code: 'unsupported_media_type' });
    const malformed = await call('/v1/charges', { method: 'POST', headers: { authorization: `Bearer ${await providerToken('cloud', 'POST', '/v1/charges', '{not json')}`, 'content-type': 'application/json' }, body: '{not json' });
    expect(await malformed.json()).toMatchObject({ status: 400, code: 'invalid_request' });
    const long = await asProvider('cloud', 'POST', '/v1/charges/chg_x/capture', { reason: 'x'.repeat(201) });
    expect(await long.json()).toMatchObject({ status: 422, code: 'invalid_request' });
    // An id not of the kind the path names names nothing there: 404, as an unknown path.
    const notACharge = await asProvider('cloud', 'GET', '/v1/charges/not-a-charge');
    expect(notACharge.status).toBe(404);
    expect(await notACharge.json()).toMatchObject({ code: 'not_found' });
  });
});
