// The `domain` service end to end (PROTOCOL.md §3.3): look-alikes of protected
// names and of other accounts' domains refused 403 domain_protected before
// velocity and before any charge, audited; IDNs stored as punycode; the
// search route marking available only what the guard would accept.
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { backendFor } from '../../workers/provider/services';
import type { ProviderBindings } from '../../workers/provider/env';
import { dpopProof } from '../support/agent-keys';
import { call, PROVIDER, useFakeOrchestrator } from '../support/fake-orchestrator';
import { agentWithToken, paidCall, type TokenAgent } from '../support/paid-calls';

useFakeOrchestrator();

const testEnv = env as unknown as TestEnv & { ORCHESTRATOR: Fetcher };
const ledgerOf = (account: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(account));
type Json = Record<string, any>;
type Agent = TokenAgent;

/** Ten hex digits, so that names of different tests are never within one edit of each other. */
const tag = () => crypto.randomUUID().replaceAll('-', '').slice(0, 10);

/** POST /v1/resources for a domain, signed as §3.1 requires. */
async function register(agent: Agent, name: string, plan = `${name.split(/[.．]/).at(-1)}-1y`) {
  const res = await paidCall(agent, 'POST', '/v1/resources', { service: 'domain', plan, parameters: { name } });
  return res;
}

const chargesAsked = async (agent: Agent) => {
  const calls = (await (await testEnv.ORCHESTRATOR.fetch(`http://127.0.0.1:8787/_test/calls?sub=${agent.sub}`)).json()) as { path: string }[];
  return calls.filter((c) => c.path === '/v1/charges').length;
};

async function auditTrail(agent: Agent): Promise<Json[]> {
  const res = await call('/v1/audit', { headers: { authorization: `DPoP ${agent.token}`, dpop: await dpopProof(agent.key, 'GET', `${PROVIDER}/v1/audit`, { accessToken: agent.token }) } });
  expect(res.status).toBe(200);
  return (await res.text())
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Json);
}

const holderOf = (name: string) => testEnv.DB.prepare(`SELECT account_id FROM service_names WHERE kind = 'domain' AND name = ?1`).bind(name).first<{ account_id: string }>();

/** The refusal the guard must give: 403, audited in the account's trail, nothing reserved, nothing asked of the orchestrator. */
async function expectRefusedUnpaid(agent: Agent, name: string, code = 'domain_protected', status = 403) {
  const before = await ledgerOf(agent.account).spentThisPeriod();
  const res = await register(agent, name);
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.contentType).toBe('application/problem+json');
  expect(res.body.code).toBe(code);
  expect(await chargesAsked(agent)).toBe(0);
  expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(before);
  const refusals = (await auditTrail(agent)).filter((e) => e.action === 'resource.provision' && e.outcome === 'refused');
  expect(refusals.map((e) => e.reason)).toContain(code);
  return res.body;
}

describe('look-alikes of protected names are refused before any charge', () => {
  it.each([
    ['the protected name itself', 'google.com'],
    ['the protected name in another TLD', 'paypal.net'],
    ['digits for letters (TR39 maps 0 to O)', 'g00gle.com'],
    ['Cyrillic letters (раураl, all but the l)', 'раураl.com'],
    ['U+0261 LATIN SMALL LETTER SCRIPT G', '\u0261oogle.com'],
    ['the same, sent as punycode', 'xn--oogle-qmc.com'],
    ['full-width letters', 'ｇｏｏｇｌｅ.com'],
    ['one insertion', 'gooogle.com'],
    ['one adjacent transposition', 'googel.com'],
    ['one omission', 'gogle.com'],
    ['one replacement', 'micros0fk.com'],
  ])('attack: %s (%s) → 403 domain_protected, audited, not charged', async (_, name) => {
    const agent = await agentWithToken();
    const problem = await expectRefusedUnpaid(agent, name);
    expect(problem.detail).toMatch(/protected name "(google|paypal|microsoft)"/);
  });

  it('accepts names clearly unlike any protected one', async () => {
    const agent = await agentWithToken();
    for (const name of ['garden.com', 'weather.net']) {
      const res = await register(agent, name);
      expect(res.status, JSON.stringify(res.body)).toBe(201);
      expect(res.body).toMatchObject({ name, name_unicode: name });
    }
  });

  it('refuses a name that is not a valid domain, or not of the plan’s TLD, as invalid_parameters', async () => {
    const agent = await agentWithToken();
    await expectRefusedUnpaid(agent, 'xn--google-.com', 'invalid_parameters', 422);
    const wrongTld = await register(agent, `plain-${tag()}.net`, 'com-1y');
    expect(wrongTld).toMatchObject({ status: 422, body: { code: 'invalid_parameters' } });
  });
});

describe('look-alikes of domains other accounts hold', () => {
  it('attack: a second account registers an equal skeleton or a one-edit neighbour → 403, not charged', async () => {
    const owner = await agentWithToken();
    const t = tag();
    expect((await register(owner, `kestrel-${t}.com`)).status).toBe(201);

    const rival = await agentWithToken();
    await expectRefusedUnpaid(rival, `kestre1-${t}.com`); // 1 for l: equal skeleton
    await expectRefusedUnpaid(rival, `kestrel-${t}.net`); // the same label in another TLD
    await expectRefusedUnpaid(rival, `kestrel-${t}x.com`); // one insertion
    await expectRefusedUnpaid(rival, `kestrle-${t}.com`); // one adjacent transposition
    await expectRefusedUnpaid(rival, `kestrel-${t}.com`, 'domain_unavailable', 409); // the name itself: taken
    expect((await holderOf(`kestrel-${t}.com`))?.account_id).toBe(owner.account);
  });

  it('lets the holder register its own look-alikes', async () => {
    const owner = await agentWithToken();
    const t = tag();
    expect((await register(owner, `heron-${t}.com`)).status).toBe(201);
    expect((await register(owner, `heron-${t}s.com`)).status).toBe(201);
    expect((await register(owner, `heron-${t}.net`)).status).toBe(201);
  });

  it('frees the look-alikes of a name once it is released', async () => {
    const owner = await agentWithToken();
    const t = tag();
    expect((await register(owner, `plover-${t}.com`)).status).toBe(201);
    const rival = await agentWithToken();
    expect((await register(rival, `plover-${t}s.com`)).status).toBe(403);
    await testEnv.DB.prepare(`DELETE FROM service_names WHERE kind = 'domain' AND name = ?1`).bind(`plover-${t}.com`).run();
    const keysLeft = await testEnv.DB.prepare('SELECT COUNT(*) AS n FROM domain_label_keys WHERE name = ?1').bind(`plover-${t}.com`).first<{ n: number }>();
    expect(keysLeft?.n).toBe(0);
    expect((await register(rival, `plover-${t}s.com`)).status).toBe(201);
  });

  it('race: two accounts pass the check with look-alikes at once; the later claim gives way at provisioning', async () => {
    const domain = backendFor('domain')!;
    const bindings = testEnv as unknown as ProviderBindings;
    const t = tag();
    const first = { resource_id: `res_${tag()}`, account_id: `acct_${tag()}`, service: 'domain', plan: 'com-1y', parameters: { name: `osprey-${t}.com` } };
    const second = { resource_id: `res_${tag()}`, account_id: `acct_${tag()}`, service: 'domain', plan: 'com-1y', parameters: { name: `osprey-${t}s.com` } };
    await domain.check!(bindings, first);
    await domain.check!(bindings, second);
    await domain.provision(bindings, first);
    await expect(domain.provision(bindings, second)).rejects.toMatchObject({ code: 'domain_protected', status: 403 });
    expect(await holderOf(`osprey-${t}s.com`)).toBeNull();
    expect((await holderOf(`osprey-${t}.com`))?.account_id).toBe(first.account_id);
  });
});

describe('internationalized names', () => {
  it('registers münchen.com as xn--mnchen-3ya.com and shows both forms', async () => {
    const agent = await agentWithToken();
    const res = await register(agent, 'münchen.com');
    expect(res.status, JSON.stringify(res.body)).toBe(201);
    expect(res.body).toMatchObject({ name: 'xn--mnchen-3ya.com', name_unicode: 'münchen.com' });
    expect((await holderOf('xn--mnchen-3ya.com'))?.account_id).toBe(agent.account);
    expect(await holderOf('münchen.com')).toBeNull();

    const other = await agentWithToken();
    await expectRefusedUnpaid(other, 'xn--mnchen-3ya.com', 'domain_unavailable', 409); // the same name, as punycode
    await expectRefusedUnpaid(other, 'munchen.com'); // one edit: the diaeresis dropped
  });
});

describe('velocity (the catalog’s 5 domains a day)', () => {
  it('refuses the sixth domain of the day with velocity_limited and no charge; the squatting guard still answers first', async () => {
    const agent = await agentWithToken();
    const t = tag();
    for (let i = 0; i < 5; i++) expect((await register(agent, `swift${i}-${t}.com`)).status).toBe(201);
    const sixth = await register(agent, `swift5-${t}.com`);
    expect(sixth).toMatchObject({ status: 402, body: { code: 'velocity_limited' } });
    expect(await chargesAsked(agent)).toBe(5);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(5 * 1044);
    expect(await holderOf(`swift5-${t}.com`)).toBeNull();
    const reserve = (await auditTrail(agent)).filter((e) => e.action === 'charge.reserve' && e.outcome === 'refused');
    expect(reserve.map((e) => e.reason)).toEqual(['velocity_limited']);
    // §3.3: squatting is checked before velocity.
    expect((await register(agent, 'gooogle.com')).body.code).toBe('domain_protected');
  });
});

describe('GET /v1/domains/search', () => {
  const search = async (query: string) => {
    const res = await call(`/v1/domains/search?${query}`);
    return { status: res.status, contentType: res.headers.get('content-type'), body: (await res.json()) as Json };
  };

  it('suggests names across the catalog’s TLDs with their one-year price, without a token', async () => {
    const t = tag();
    const res = await search(`q=${encodeURIComponent(`lantern ${t}`)}&limit=30`);
    expect(res.status).toBe(200);
    expect(res.body.query).toBe(`lantern ${t}`);
    expect(res.body.data).toHaveLength(30);
    expect(res.body.data[0]).toEqual({ name: `lantern${t}.com`, name_unicode: `lantern${t}.com`, available: true, price: { amount: 1044, currency: 'usd' }, plan: 'com-1y' });
    expect(res.body.data.map((d: Json) => d.name)).toEqual(expect.arrayContaining([`lantern${t}.io`, `lantern-${t}.com`, `getlantern${t}.net`]));
    expect(res.body.data.find((d: Json) => d.name === `lantern${t}.io`).price).toEqual({ amount: 4600, currency: 'usd' });
  });

  it('marks taken names, look-alikes of held ones and protected ones unavailable', async () => {
    const owner = await agentWithToken();
    const t = tag();
    expect((await register(owner, `finch-${t}.com`)).status).toBe(201);
    const held = await search(`q=finch-${t}`);
    const byName = new Map(held.body.data.map((d: Json) => [d.name, d]));
    expect(byName.get(`finch-${t}.com`)).toMatchObject({ available: false, reason: 'taken' });
    expect(byName.get(`finch-${t}.net`)).toMatchObject({ available: false, reason: 'protected' });
    expect(byName.get(`getfinch-${t}.com`)).toMatchObject({ available: true });
    expect(byName.get(`getfinch-${t}.com`)).not.toHaveProperty('reason');

    const brand = await search('q=paypal');
    expect(brand.body.data.filter((d: Json) => d.name.startsWith('paypal.')).every((d: Json) => d.reason === 'protected')).toBe(true);
  });

  it('offers as available only what a registration then accepts', async () => {
    // g00gle.* are google's look-alikes; getg00gle.* are three edits away.
    const { body } = await search('q=g00gle&limit=12');
    const available = body.data.find((d: Json) => d.available);
    const refused = body.data.find((d: Json) => d.reason === 'protected');
    expect(available && refused).toBeTruthy();
    const agent = await agentWithToken();
    expect((await register(agent, refused.name)).status).toBe(403);
    expect((await register(agent, available.name)).status).toBe(201);
  });

  it('shows IDNs in both forms', async () => {
    const t = tag();
    const { body } = await search(`q=${encodeURIComponent(`zürich${t}.io`)}`);
    expect(body.data[0]).toMatchObject({ name: expect.stringMatching(/^xn--.*\.io$/), name_unicode: `zürich${t}.io`, plan: 'io-1y' });
  });

  it.each([
    ['no q', 'limit=5'],
    ['an empty q', 'q='],
    ['punctuation only', 'q=%21%21%21'],
    ['a limit of 0', 'q=coffee&limit=0'],
    ['a limit over 100', 'q=coffee&limit=101'],
    ['a keyword too long for any label', `q=${'a'.repeat(70)}`],
  ])('refuses %s with 422 invalid_parameters', async (_, query) => {
    const res = await search(query);
    expect(res.status).toBe(422);
    expect(res.contentType).toBe('application/problem+json');
    expect(res.body.code).toBe('invalid_parameters');
  });

  it('is in the OpenAPI document', async () => {
    const doc = (await (await call('/openapi.json')).json()) as { paths: Record<string, unknown> };
    expect(doc.paths).toHaveProperty('/v1/domains/search');
  });
});
