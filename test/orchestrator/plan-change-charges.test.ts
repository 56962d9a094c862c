// The charges API for plan changes (PROTOCOL.md §3.1 "Also", §3.2): a provider
// gives back part of a captured charge (a downgrade's pro-rata credit), and a
// renewal after a plan change rests on the change's charge at the full price
// the agent signed in its PATCH.
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { auditEvents } from '../../workers/lib/audit-trail';
import type { AuditEvent } from '../../workers/lib/audit';
import { asProvider, chargeBody, PROVIDER_URL, providerReceipt, signedAgentRequest, subjectAt } from '../support/fake-provider';
import { activeMandate, chargeMadeDaysAgo, newPrincipal } from '../support/orchestrator-client';

const testEnv = env as unknown as TestEnv;
const ledgerOf = (id: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(id));
type Json = Record<string, any>;

async function setup(services = ['domain', 'workers-paid']) {
  const human = await newPrincipal();
  const { agent, mandate_id } = await activeMandate(human, undefined, { scope: [{ provider: 'cloud', services, max_per_charge: { amount: 2000, currency: 'usd' } }] });
  const sub = await subjectAt(agent, mandate_id, 'cloud');
  return { human, agent, mandate_id, sub };
}

async function authorized(body: Json) {
  const res = await asProvider('cloud', 'POST', '/v1/charges', body);
  expect(res.status, await res.clone().text()).toBe(201);
  return ((await res.json()) as { charge_id: string }).charge_id;
}

async function captured(body: Json) {
  const chargeId = await authorized(body);
  expect((await asProvider('cloud', 'POST', `/v1/charges/${chargeId}/capture`, {})).status).toBe(200);
  return chargeId;
}

const refund = (chargeId: string, amount: number, key: string, provider: 'cloud' | 'data' = 'cloud') =>
  asProvider(provider, 'POST', `/v1/charges/${chargeId}/refund`, { amount, currency: 'usd', reason: 'plan_change_credit', idempotency_key: key });

describe('POST /v1/charges/{id}/refund (part of a captured charge)', () => {
  it('gives back the amount, frees the spend of the period and of the mandate, audits it, and never twice for one key', async () => {
    const { human, agent, mandate_id, sub } = await setup();
    const chargeId = await captured(await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount: 1044 }));
    const ledger = ledgerOf(human.principal_id);
    expect(await ledger.spentThisPeriod()).toBe(1044);

    const first = await refund(chargeId, 300, 'credit-1');
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ charge_id: chargeId, status: 'captured', amount: 1044, amount_refunded: 300 });
    expect(await ledger.spentThisPeriod()).toBe(744);
    expect(await ledger.spentThisPeriod(`mandate:${mandate_id}`)).toBe(744);
    // The same key again (a provider's retry) refunds nothing more; the same key for another amount is refused.
    expect(await (await refund(chargeId, 300, 'credit-1')).json()).toMatchObject({ amount_refunded: 300 });
    expect(await ledger.spentThisPeriod()).toBe(744);
    expect((await refund(chargeId, 200, 'credit-1')).status).toBe(422);

    const events: AuditEvent[] = [];
    for await (const e of auditEvents(ledger, testEnv.DB, human.principal_id, 0, { action: 'charge.refund' })) events.push(e);
    expect(events).toMatchObject([{ outcome: 'succeeded', target: chargeId, amount: { amount: 300, currency: 'usd' }, reason: 'plan_change_credit', actor: { type: 'provider', id: 'cloud' } }]);
  });

  it('refuses more than what remains refundable with 409 (audited), then refunds the rest to `refunded`', async () => {
    const { human, agent, mandate_id, sub } = await setup();
    const chargeId = await captured(await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount: 1044 }));
    expect((await refund(chargeId, 300, 'a')).status).toBe(200);
    const over = await refund(chargeId, 745, 'b');
    expect(over.status).toBe(409);
    expect(await over.json()).toMatchObject({ code: 'invalid_request', charge_status: 'captured', refundable: { amount: 744, currency: 'usd' } });
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(744);
    const rest = await refund(chargeId, 744, 'c');
    expect(await rest.json()).toMatchObject({ status: 'refunded', amount_refunded: 1044 });
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(0);
    expect((await refund(chargeId, 1, 'd')).status).toBe(409);
    const events: AuditEvent[] = [];
    for await (const e of auditEvents(ledgerOf(human.principal_id), testEnv.DB, human.principal_id, 0, { action: 'charge.refund' })) events.push(e);
    expect(events.map((e) => [e.outcome, e.amount?.amount])).toEqual([
      ['succeeded', 300],
      ['refused', 745],
      ['succeeded', 744],
      ['refused', 1],
    ]);
  });

  it('refuses a charge not yet captured (409, saying so), another provider’s charge (404), and an unauthenticated caller before its body (401)', async () => {
    const { agent, mandate_id, sub } = await setup();
    const chargeId = await authorized(await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount: 1044 }));
    const early = await refund(chargeId, 100, 'early');
    expect(early.status).toBe(409);
    expect(await early.json()).toMatchObject({ charge_status: 'authorized' });
    expect((await refund(chargeId, 100, 'other', 'data')).status).toBe(404);
    const { call } = await import('../support/orchestrator-client');
    const anonymous = await call(`/v1/charges/${chargeId}/refund`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"amount":"lots"}' });
    expect(anonymous.status).toBe(401);
  });
});

/** A provider's charge for an agent's signed PATCH of `resource` to `plan`, at `amount` (its pro-rata part). */
async function planChangeBody(input: { agent: Awaited<ReturnType<typeof setup>>['agent']; mandate_id: string; sub: string; resource: string; plan: string; amount: number; signedPrice?: number; target?: string }) {
  const targetUri = input.target ?? `${PROVIDER_URL.cloud}/v1/resources/${input.resource}`;
  const body = JSON.stringify({ plan: input.plan, ...(input.signedPrice === undefined ? {} : { expected_price: { amount: input.signedPrice, currency: 'usd' } }) });
  return {
    mandate_id: input.mandate_id,
    principal_sub: input.sub,
    agent_id: input.agent.agent_id,
    service: 'workers-paid',
    plan: input.plan,
    amount: input.amount,
    currency: 'usd',
    description: 'plan change',
    resource_ref: input.resource,
    idempotency_key: crypto.randomUUID(),
    token_jti: `tok_${crypto.randomUUID()}`,
    agent_request: await signedAgentRequest(input.agent.key, 'PATCH', targetUri, body),
  };
}

describe('a plan change (signed PATCH) and the renewals after it', () => {
  it('authorizes up to the signed full price, for the signed resource only, and keeps that price as evidence', async () => {
    const { human, agent, mandate_id, sub } = await setup();
    const base = { agent, mandate_id, sub, resource: 'res_pc1', plan: 'paid' };
    const chargeId = await authorized(await planChangeBody({ ...base, amount: 250, signedPrice: 500 }));
    const evidence = JSON.parse((await ledgerOf(human.principal_id).getCharge(chargeId))!.evidence!) as Json;
    expect(evidence.plan_change).toEqual({ full_price: { amount: 500, currency: 'usd' } });

    const refused = async (body: Json) => expect(await (await asProvider('cloud', 'POST', '/v1/charges', body)).json()).toMatchObject({ status: 401, code: 'invalid_signature' });
    await refused(await planChangeBody({ ...base, amount: 501, signedPrice: 500 }));
    await refused(await planChangeBody({ ...base, amount: 0 }));
    await refused({ ...(await planChangeBody({ ...base, amount: 250, signedPrice: 500 })), resource_ref: 'res_other' });
    await refused({ ...(await planChangeBody({ ...base, amount: 0, signedPrice: 0 })), plan: 'free' });
  });

  it('a renewal of the change’s charge is at the signed full price (or the charge’s own amount), same resource and plan', async () => {
    const { human, agent, mandate_id, sub } = await setup();
    const change = await planChangeBody({ agent, mandate_id, sub, resource: 'res_pc2', plan: 'paid', amount: 250, signedPrice: 500 });
    const chargeId = await authorized(change);
    const { agent_request: _signed, ...rest } = change;
    const renewal = (over: Json = {}) => ({ ...rest, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: chargeId, amount: 500, ...over });
    // Not captured yet: nothing to renew.
    expect((await asProvider('cloud', 'POST', '/v1/charges', renewal())).status).toBe(401);
    await asProvider('cloud', 'POST', `/v1/charges/${chargeId}/capture`, {});
    // A period on (with no charge before it on the resource, the change is held to a whole one).
    await chargeMadeDaysAgo(human.principal_id, chargeId, 28);

    const renewed = await asProvider('cloud', 'POST', '/v1/charges', renewal());
    expect(renewed.status).toBe(201);
    const first = (await renewed.json()) as Json;
    expect(first).toMatchObject({ amount: 500, plan: 'paid' });
    // Another try while the first is still pending replaces it (the provider gave up on that one); once captured, a charge is renewed once.
    const second = await asProvider('cloud', 'POST', '/v1/charges', renewal({ amount: 250 }));
    expect(second.status).toBe(201);
    const secondId = ((await second.json()) as Json).charge_id as string;
    expect(await (await asProvider('cloud', 'GET', `/v1/charges/${first.charge_id}`)).json()).toMatchObject({ status: 'voided' });
    await asProvider('cloud', 'POST', `/v1/charges/${secondId}/capture`, {});
    expect(await (await asProvider('cloud', 'POST', '/v1/charges', renewal())).json()).toMatchObject({ status: 401, code: 'invalid_signature', detail: expect.stringContaining('renewed once') });
    for (const over of [{ amount: 600 }, { plan: 'free', amount: 0 }, { resource_ref: 'res_other' }]) {
      expect(await (await asProvider('cloud', 'POST', '/v1/charges', renewal(over))).json()).toMatchObject({ status: 401, code: 'invalid_signature' });
    }
  });

  it('a renewal of the change’s charge waits for the end of the period its receipt states (the change paid for the rest of it)', async () => {
    const { human, agent, mandate_id, sub } = await setup();
    // The subscription began a month ago: its own period would be over, the one the change's receipt states is not.
    const subscribed = await captured({ ...(await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'workers-paid', plan: 'free', amount: 0 })), resource_ref: 'res_pc4' });
    await chargeMadeDaysAgo(human.principal_id, subscribed, 30);
    const change = await planChangeBody({ agent, mandate_id, sub, resource: 'res_pc4', plan: 'paid', amount: 250, signedPrice: 500 });
    const chargeId = await authorized(change);
    const periodEnd = new Date(Date.now() + 10 * 86_400_000).toISOString();
    const receipt = await providerReceipt('cloud', { charge_id: chargeId, agent_id: agent.agent_id, mandate_id, amount: 250, currency: 'usd', period_end: periodEnd });
    expect((await asProvider('cloud', 'POST', `/v1/charges/${chargeId}/capture`, { receipt })).status).toBe(200);
    const { agent_request: _signed, ...rest } = change;
    const early = await asProvider('cloud', 'POST', '/v1/charges', { ...rest, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: chargeId, amount: 500 });
    expect(await early.json()).toMatchObject({ status: 409, code: 'renewal_not_due', renews_at: periodEnd });
  });

  it('a change with no charge before it on its resource is held to a whole period from when it was made', async () => {
    const { human, agent, mandate_id, sub } = await setup();
    const change = await planChangeBody({ agent, mandate_id, sub, resource: 'res_pc6', plan: 'paid', amount: 250, signedPrice: 500 });
    const changed = await captured(change);
    const { agent_request: _signed, ...rest } = change;
    const renewal = () => ({ ...rest, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: changed, amount: 500 });
    const madeAt = (await ledgerOf(human.principal_id).getCharge(changed))!.created;
    expect(await (await asProvider('cloud', 'POST', '/v1/charges', renewal())).json()).toMatchObject({ status: 409, code: 'renewal_not_due', renews_at: new Date(madeAt + 27 * 86_400_000).toISOString() });
    await chargeMadeDaysAgo(human.principal_id, changed, 28);
    expect((await asProvider('cloud', 'POST', '/v1/charges', renewal())).status).toBe(201);
  });

  it('a change is renewed no sooner than the charge it changed would have been, and that charge is no longer renewed', async () => {
    const { human, agent, mandate_id, sub } = await setup();
    const subscription = { ...(await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'workers-paid', plan: 'free', amount: 0 })), resource_ref: 'res_pc5' };
    const subscribed = await captured(subscription);
    const change = await planChangeBody({ agent, mandate_id, sub, resource: 'res_pc5', plan: 'paid', amount: 250, signedPrice: 500 });
    const changed = await captured(change);
    const { agent_request: _signed, ...rest } = change;
    const renewal = (renewed: string, amount: number, over: Json = {}) => ({ ...rest, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: renewed, amount, ...over });
    // The change paid for the rest of the subscription's first period: a month (27 days at the least) from when it began.
    const begun = (await ledgerOf(human.principal_id).getCharge(subscribed))!.created;
    expect(await (await asProvider('cloud', 'POST', '/v1/charges', renewal(changed, 500))).json()).toMatchObject({ status: 409, code: 'renewal_not_due', renews_at: new Date(begun + 27 * 86_400_000).toISOString() });
    // The subscription's own charge was replaced by the change: renewing it too would bill the resource twice.
    const twice = await asProvider('cloud', 'POST', '/v1/charges', renewal(subscribed, 0, { plan: 'free' }));
    expect(await twice.json()).toMatchObject({ status: 401, code: 'invalid_signature', detail: expect.stringContaining('replaced') });
    await chargeMadeDaysAgo(human.principal_id, subscribed, 28);
    expect((await asProvider('cloud', 'POST', '/v1/charges', renewal(changed, 500))).status).toBe(201);
  });

  it('a downgrade is a $0 charge whose renewals are $0', async () => {
    const { human, agent, mandate_id, sub } = await setup();
    const change = await planChangeBody({ agent, mandate_id, sub, resource: 'res_pc3', plan: 'free', amount: 0, signedPrice: 0 });
    const chargeId = await captured(change);
    await chargeMadeDaysAgo(human.principal_id, chargeId, 28);
    const { agent_request: _signed, ...rest } = change;
    const renewal = (amount: number) => ({ ...rest, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: chargeId, amount });
    expect((await asProvider('cloud', 'POST', '/v1/charges', renewal(0))).status).toBe(201);
    expect((await asProvider('cloud', 'POST', '/v1/charges', renewal(500))).status).toBe(401);
  });
});
