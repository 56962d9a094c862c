// The Workers Paid subscription through the running Workers (PROTOCOL.md §3.1
// "Also", §3.2): subscribed, downgraded with a pro-rata credit, upgraded with
// a pro-rata charge, each through the orchestrator's charges, then deleted so
// that nothing renews.
import { describe, expect, inject, it, vi } from 'vitest';
import { agentAtProvider, asHuman, readJson, signedPaidCall, tokenRead, type Json } from './support';

const urls = inject('urls');
const PAID = { amount: 500, currency: 'usd' };
const FREE = { amount: 0, currency: 'usd' };

describe('a subscription’s whole life', () => {
  it('paid, down to free with a credit, back to paid with a pro-rata charge, deleted: the orchestrator’s charges add up', async () => {
    const agent = await agentAtProvider(urls, 'cloud', ['workers-paid'], 2000);
    const call = async (method: string, path: string, json?: unknown) => {
      const res = await signedPaidCall(urls.cloud, agent.key, agent.token, method, path, json, crypto.randomUUID());
      return { status: res.status, body: await readJson(res) };
    };

    const created = await call('POST', '/v1/resources', { service: 'workers-paid', plan: 'paid', parameters: {}, expected_price: PAID });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body).toMatchObject({ plan: 'paid', status: 'active', renews_at: expect.any(String) });
    const id = created.body.resource_id as string;

    // Nearly a whole month is left: the credit is nearly the whole price, and the way back costs as much.
    const down = await call('PATCH', `/v1/resources/${id}`, { plan: 'free', expected_price: FREE });
    expect(down.status, JSON.stringify(down.body)).toBe(200);
    expect(down.body).toMatchObject({ plan: 'free', charged: FREE });
    const credit = down.body.credited.amount as number;
    expect(credit).toBeGreaterThan(480);
    expect(credit).toBeLessThanOrEqual(500);

    const up = await call('PATCH', `/v1/resources/${id}`, { plan: 'paid', expected_price: PAID });
    expect(up.status, JSON.stringify(up.body)).toBe(200);
    expect(up.body).toMatchObject({ plan: 'paid', credited: FREE });
    expect(Math.abs(up.body.charged.amount - credit)).toBeLessThanOrEqual(1);

    // The orchestrator holds all three, captured (off the request's path), the first partly given back.
    await vi.waitFor(
      async () => {
        const charges = (await readJson(await asHuman(agent.human, 'GET', '/v1/charges'))).data as Json[];
        const byId = new Map(charges.map((c) => [c.charge_id, c]));
        // Credited in full when the change came within the first minutes of the period.
        expect(byId.get(created.body.charge_id)).toMatchObject({ status: credit === 500 ? 'refunded' : 'captured', amount: 500, amount_refunded: credit });
        expect(byId.get(down.body.charge_id)).toMatchObject({ status: 'captured', amount: 0, plan: 'free' });
        expect(byId.get(up.body.charge_id)).toMatchObject({ status: 'captured', amount: up.body.charged.amount, plan: 'paid' });
      },
      { timeout: 15_000, interval: 250 },
    );
    const limits = (await readJson(await asHuman(agent.human, 'GET', '/v1/limits'))).data as Json[];
    expect(limits.find((l) => l.scope === 'principal')?.spent.amount).toBe(500 - credit + up.body.charged.amount);

    const deleted = await call('DELETE', `/v1/resources/${id}`);
    expect(deleted.body).toMatchObject({ status: 'deleted' });
    expect(deleted.body.renews_at).toBeUndefined();
    expect((await readJson(await tokenRead(urls.cloud, agent, `/v1/resources/${id}`))).status).toBe('deleted');
  });
});
