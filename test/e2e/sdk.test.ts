// The agent SDK (agent/sdk.ts) driving the three running Workers as an agent
// would: from a fresh key to resources at two providers in one session.
import { describe, expect, inject, it } from 'vitest';
import { generateAgentKey, OapClient, OapError } from '../../agent/sdk';
import { asHuman, inDays, readJson, signIn, signUpVerified } from './support';

const urls = inject('urls');

describe('the agent SDK', () => {
  it('goes from a fresh key to a domain and a database at two providers, under one mandate', async () => {
    const email = `sdk-${crypto.randomUUID().slice(0, 8)}@example.test`;
    await signUpVerified(urls.orchestrator, email, 'sdk test password');
    const human = await signIn(urls.orchestrator, email, 'sdk test password');

    const { key } = await generateAgentKey();
    // What the agent sends to create resources, as the providers receive it.
    const creations: Record<string, unknown>[] = [];
    let catalogReads = 0;
    const recording: typeof fetch = async (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (init?.method === 'POST' && url.pathname === '/v1/resources') creations.push(JSON.parse(String(init.body)) as Record<string, unknown>);
      if (url.pathname === '/v1/catalog') catalogReads++;
      return fetch(input, init);
    };
    const client = new OapClient({ orchestrator: urls.orchestrator, key, agentName: 'sdk agent', fetch: recording });
    const { providers } = await client.discover();
    expect(providers.map((p) => p.id).sort()).toEqual(['cloud', 'data']);
    const catalogs = await client.catalogs();
    expect(catalogs.flatMap((c) => c.services.map((s) => `${c.provider}/${s.id}`))).toEqual(expect.arrayContaining(['cloud/domain', 'data/database']));

    const pending = await client.requestMandate({
      description: 'A site and its database',
      scope: [
        { provider: 'cloud', services: ['domain'] },
        { provider: 'data', services: ['database'] },
      ],
      spend_limit: { amount: 5000, currency: 'usd', period: 'month' },
      expires_at: inDays(30),
    });
    expect(pending).toMatchObject({ status: 'pending', agent_id: null });
    // The human types the code the agent shows.
    const approved = await asHuman(human, 'POST', `/v1/mandates/${pending.mandate_id}/approve`, { json: { user_code: pending.user_code } });
    expect(approved.status).toBe(200);
    const mandate = await client.waitForDecision(pending.mandate_id, { sleep: async () => {} });
    expect(mandate).toMatchObject({ status: 'active', agent_id: expect.stringMatching(/^agt_/) });

    const name = `sdk-${crypto.randomUUID().slice(0, 8)}.com`;
    const domain = await client.provision(mandate.mandate_id, 'cloud', { service: 'domain', plan: 'com-1y', parameters: { name }, expected_price: { amount: 1044, currency: 'usd' } });
    expect(domain).toMatchObject({ status: 'active', name, charge_id: expect.stringMatching(/^chg_/), receipt: expect.any(String) });

    const progress: string[] = [];
    const database = await client.provision(mandate.mandate_id, 'data', { service: 'database', plan: 'free', parameters: { name: 'orders' } }, { onProgress: (s) => progress.push(s), pollMs: 100 });
    expect(database).toMatchObject({ status: 'active', service: 'database' });
    // A price given is signed as given; none given, the catalog's is read and signed.
    const databasePrice = catalogs.find((c) => c.provider === 'data')!.services.find((s) => s.id === 'database')!.plans.find((p: { id: string }) => p.id === 'free').price;
    expect(creations.map((c) => c.expected_price)).toEqual([{ amount: 1044, currency: 'usd' }, databasePrice]);
    // A price given is the one signed, even where the catalog says otherwise: the provider refuses rather than charge another.
    const stale = await client.provision(mandate.mandate_id, 'cloud', { service: 'domain', plan: 'com-1y', parameters: { name: `sdk-${crypto.randomUUID().slice(0, 8)}.com` }, expected_price: { amount: 999, currency: 'usd' } }).catch((e: unknown) => e);
    expect(stale).toMatchObject({ status: 409, code: 'price_changed' });
    // A retry under the caller's own key signs what the first try signed, without reading the catalog again.
    const retryKey = crypto.randomUUID();
    const again = { service: 'database', plan: 'free', parameters: { name: 'again' } };
    const once = await client.provision(mandate.mandate_id, 'data', again, { idempotencyKey: retryKey, pollMs: 100 });
    const readsBefore = catalogReads;
    const twice = await client.provision(mandate.mandate_id, 'data', again, { idempotencyKey: retryKey, pollMs: 100 });
    expect(catalogReads).toBe(readsBefore);
    expect(twice.resource_id).toBe(once.resource_id);
    expect(database.credentials.token).toMatch(/^dbt_/);
    expect(progress.at(-1)).toBe('succeeded');

    expect((await client.resources(mandate.mandate_id, 'cloud')).map((r) => r.resource_id)).toContain(domain.resource_id);
    expect(await client.usage(mandate.mandate_id, 'cloud')).toMatchObject({ spent: { amount: 1044 } });
    const trail = await client.audit();
    expect(new Set(trail.map((e) => e.actor.id))).toEqual(new Set([mandate.agent_id]));
    expect(trail.map((e) => e.action)).toEqual(expect.arrayContaining(['mandate.request', 'attestation.issue']));
  });

  it('raises protocol refusals as OapError with their stable code', async () => {
    const email = `sdk-${crypto.randomUUID().slice(0, 8)}@example.test`;
    await signUpVerified(urls.orchestrator, email, 'sdk test password');
    const human = await signIn(urls.orchestrator, email, 'sdk test password');
    const { key } = await generateAgentKey();
    const client = new OapClient({ orchestrator: urls.orchestrator, key });
    const pending = await client.requestMandate({
      description: 'One cheap domain',
      scope: [{ provider: 'cloud', services: ['domain'], max_per_charge: { amount: 500, currency: 'usd' } }],
      spend_limit: { amount: 5000, currency: 'usd', period: 'month' },
      expires_at: inDays(30),
    });
    await readJson(await asHuman(human, 'POST', `/v1/mandates/${pending.mandate_id}/approve`, { json: { user_code: pending.user_code } }));
    const mandate = await client.waitForDecision(pending.mandate_id, { sleep: async () => {} });
    const refusal = await client.provision(mandate.mandate_id, 'cloud', { service: 'domain', plan: 'com-1y', parameters: { name: `sdk-${crypto.randomUUID().slice(0, 8)}.com` } }).catch((e: unknown) => e);
    expect(refusal).toBeInstanceOf(OapError);
    expect(refusal).toMatchObject({ status: 402, code: 'spend_limit_exceeded', isRefusal: true });
    expect((refusal as OapError).body.step_up_url).toBe(`${urls.orchestrator}/mandates/${mandate.mandate_id}/approval`);
  });
});
