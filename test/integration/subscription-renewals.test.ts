// A Workers Paid subscription through both real roles (both-roles.ts), its
// clock moved a period at a time (PROTOCOL.md §3.2, issue 4 point 6): the
// provider renews at the boundary its receipt stated, through the
// orchestrator's charges; the orchestrator takes it only then, and decides it
// under the mandate chain's current link; a renewal a limit does not fit
// suspends the subscription, charges nothing, and the human hears of it; a
// later try, once the human has raised the limit, resumes it.
import { runDurableObjectAlarm } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { tokenRequest } from '../support/fake-orchestrator';
import { activeMandate, call, newPrincipal, signIn, type Agent, type Human } from '../support/orchestrator-client';
import { paidCall, tokenRead, type Json } from '../support/paid-calls';
import type { BothRoles } from './both-roles';

const both = env as unknown as BothRoles;
const PAID = { amount: 500, currency: 'usd' };

beforeEach(() => {
  // Each role fetches the other's keys at its URL (jwks-cache.ts): those URLs are this Worker.
  const original = globalThis.fetch;
  vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
    const request = new Request(input, init);
    return ['8787', '8788'].includes(new URL(request.url).port) ? exports.default.fetch(request) : original(input, init);
  });
});

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

/** Both roles' clock (one isolate: what their code reads as now), from here on. */
function clockAt(at: number) {
  vi.useFakeTimers({ toFake: ['Date'] });
  vi.setSystemTime(at);
}

/** The agent's DPoP-bound token at the provider, through an attestation of its mandate (§2.2, §2.3). */
async function providerToken(agent: Agent, mandateId: string) {
  const attested = await agent.request('POST', '/v1/attestations', { mandate_id: mandateId, provider: 'cloud' });
  expect(attested.status).toBe(200);
  const { attestation } = (await attested.json()) as { attestation: string };
  const res = await tokenRequest(agent.key, attestation);
  expect(res.status).toBe(200);
  const token = (await res.json()) as { access_token: string; account_id: string };
  return { key: agent.key, token: token.access_token, account: token.account_id };
}

/** A human with an agent whose mandate allows Workers Paid, and the subscription it bought, its first charge captured. */
async function subscribed() {
  const human = await newPrincipal();
  const { agent, mandate_id } = await activeMandate(human, undefined, { scope: [{ provider: 'cloud', services: ['workers-paid'] }] });
  const atProvider = await providerToken(agent, mandate_id);
  const created = await paidCall(atProvider, 'POST', '/v1/resources', { service: 'workers-paid', plan: 'paid', parameters: {}, expected_price: PAID });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  // Captured off the request's path, by the provider's outbox (its alarm, on the real clock still).
  await vi.waitFor(async () => expect((await charges(human)).find((c) => c.charge_id === created.body.charge_id)?.status).toBe('captured'), { timeout: 10_000, interval: 100 });
  return { human, agent, mandate_id, account: atProvider.account, resource: created.body as Json };
}

async function charges(human: Human): Promise<Json[]> {
  const res = await call('/v1/charges?limit=100', { headers: { cookie: human.cookie } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { data: Json[] }).data;
}

/** The provider's side of the subscription, read by the agent with a token of now. */
async function atProvider(agent: Agent, mandateId: string, resourceId: string) {
  const read = await tokenRead(await providerToken(agent, mandateId), `/v1/resources/${resourceId}`);
  expect(read.status).toBe(200);
  return read.body;
}

/**
 * Runs the provider account's due work (its alarm: the renewal pass, then the captures it owes) until `done`
 * holds. Alarms are set on the real clock, which the moved one has left behind, so they are run here.
 */
async function providerWorksUntil(account: string, done: () => Promise<boolean>) {
  const ledger = both.PROVIDER_LEDGER.get(both.PROVIDER_LEDGER.idFromName(account));
  for (let run = 0; run < 10; run++) {
    if (await done()) return;
    await runDurableObjectAlarm(ledger);
  }
  expect(await done(), 'the provider’s due work did not get there').toBe(true);
}

const renewalsOf = (all: Json[], chargeId: string) => all.filter((c) => c.receipt && decodeJwt(c.receipt).renewal_of === chargeId);

describe('a subscription renewed through both roles', () => {
  it('renews at the boundary its receipt stated, not before, and again a period later, each charge captured with its receipt', async () => {
    const { human, agent, mandate_id, account, resource } = await subscribed();
    const firstCharge = (await charges(human)).find((c) => c.charge_id === resource.charge_id)!;
    const boundary = Date.parse(resource.renews_at);
    expect(decodeJwt(firstCharge.receipt).period_end).toBe(resource.renews_at);

    // An hour before the boundary the provider's due work renews nothing.
    clockAt(boundary - 3_600_000);
    await runDurableObjectAlarm(both.PROVIDER_LEDGER.get(both.PROVIDER_LEDGER.idFromName(account)));
    const again = await signIn(human.email, human.password, human.principal_id);
    expect(await charges(again)).toHaveLength(1);

    clockAt(boundary + 1000);
    const session = await signIn(human.email, human.password, human.principal_id);
    await providerWorksUntil(account, async () => renewalsOf(await charges(session), resource.charge_id).some((c) => c.status === 'captured'));
    const [renewal] = renewalsOf(await charges(session), resource.charge_id);
    expect(renewal).toMatchObject({ status: 'captured', amount: 500, plan: 'paid', resource_ref: resource.resource_id, mandate_id });
    const renewedUntil = decodeJwt(renewal!.receipt).period_end as string;
    expect(Date.parse(renewedUntil) - boundary).toBeGreaterThanOrEqual(28 * 86_400_000);
    expect(await atProvider(agent, mandate_id, resource.resource_id)).toMatchObject({ status: 'active', plan: 'paid', renews_at: renewedUntil });

    // The next period renews the renewal, at the end its receipt stated.
    clockAt(Date.parse(renewedUntil) + 1000);
    const later = await signIn(human.email, human.password, human.principal_id);
    await providerWorksUntil(account, async () => renewalsOf(await charges(later), renewal!.charge_id).some((c) => c.status === 'captured'));
    const all = await charges(later);
    expect(all.filter((c) => c.resource_ref === resource.resource_id && c.status === 'captured')).toHaveLength(3);
    // Each renewal counted once, in the period it was made in.
    const limits = ((await (await call('/v1/limits', { headers: { cookie: later.cookie } })).json()) as { data: Json[] }).data;
    expect(limits.find((l) => l.scope === 'principal')?.spent).toEqual(PAID);
  });

  it('after the human re-approved the mandate, renews under the successor, and the subscription stays active', async () => {
    const { human, agent, mandate_id, account, resource } = await subscribed();
    const successor = await activeMandate(human, agent, { supersedes: mandate_id, scope: [{ provider: 'cloud', services: ['workers-paid'] }], spend_limit: { amount: 8000, currency: 'usd', period: 'month' } });

    clockAt(Date.parse(resource.renews_at) + 1000);
    const session = await signIn(human.email, human.password, human.principal_id);
    await providerWorksUntil(account, async () => renewalsOf(await charges(session), resource.charge_id).some((c) => c.status === 'captured'));
    const [renewal] = renewalsOf(await charges(session), resource.charge_id);
    expect(renewal).toMatchObject({ status: 'captured', mandate_id: successor.mandate_id });
    expect(decodeJwt(renewal!.receipt).mandate_id).toBe(successor.mandate_id);
    expect(await atProvider(agent, successor.mandate_id, resource.resource_id)).toMatchObject({ status: 'active', plan: 'paid' });
  });

  it('suspends the subscription when its renewal does not fit the limit the human lowered, charges nothing, tells the human once, and resumes once the human raises it', async () => {
    const { human, agent, mandate_id, account, resource } = await subscribed();
    const setLimit = (session: Human, amount: number) =>
      call('/v1/limits', { method: 'POST', headers: session.headers({ 'idempotency-key': crypto.randomUUID() }), body: JSON.stringify({ amount, currency: 'usd' }) });
    expect((await setLimit(human, 300)).status).toBe(200);

    const boundary = Date.parse(resource.renews_at);
    clockAt(boundary + 1000);
    await providerWorksUntil(account, async () => (await atProvider(agent, mandate_id, resource.resource_id)).status === 'suspended');
    // Tried again in an hour, and declined again.
    const suspended = await atProvider(agent, mandate_id, resource.resource_id);
    expect(Date.parse(suspended.renews_at)).toBe(boundary + 1000 + 3_600_000);
    clockAt(Date.parse(suspended.renews_at) + 1000);
    await providerWorksUntil(account, async () => Date.parse((await atProvider(agent, mandate_id, resource.resource_id)).renews_at) > Date.now());
    const session = await signIn(human.email, human.password, human.principal_id);
    expect((await charges(session)).map((c) => c.charge_id)).toEqual([resource.charge_id]);
    const declinedNotes = async (as: Human) =>
      (((await (await call('/v1/notifications?limit=100', { headers: { cookie: as.cookie } })).json()) as { data: Json[] }).data).filter((n) => n.type === 'renewal.declined');
    expect(await declinedNotes(session)).toEqual([
      expect.objectContaining({ data: expect.objectContaining({ renewal_of: resource.charge_id, resource_ref: resource.resource_id, code: 'spend_limit_exceeded' }) }),
    ]);

    // The human raises the limit again: the next try renews it, for a whole period from then.
    expect((await setLimit(session, 10_000)).status).toBe(200);
    const nextTry = Date.parse((await atProvider(agent, mandate_id, resource.resource_id)).renews_at);
    clockAt(nextTry + 1000);
    const later = await signIn(human.email, human.password, human.principal_id);
    await providerWorksUntil(account, async () => renewalsOf(await charges(later), resource.charge_id).some((c) => c.status === 'captured'));
    const resumed = await atProvider(agent, mandate_id, resource.resource_id);
    expect(resumed).toMatchObject({ status: 'active', plan: 'paid' });
    // A month from the try that resumed it, not from the boundary it missed.
    const resumedAt = new Date(nextTry + 1000);
    const monthLater = Date.UTC(resumedAt.getUTCFullYear(), resumedAt.getUTCMonth() + 1, resumedAt.getUTCDate(), resumedAt.getUTCHours(), resumedAt.getUTCMinutes(), resumedAt.getUTCSeconds());
    expect(resumed.renews_at).toBe(new Date(monthLater).toISOString());
    expect(await declinedNotes(later)).toHaveLength(1);
  });
});
