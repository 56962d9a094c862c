// Recurring plans through both real roles (both-roles.ts), the clock moved a
// period at a time (PROTOCOL.md §3.2, issue 4 point 6): the provider renews a
// Workers Paid subscription or a domain at the boundary its receipt stated,
// through the orchestrator's charges, after plan changes too; the orchestrator
// takes it only then, and decides it under the mandate chain's current link
// (a mandate lasts a year at most: a domain renews under the one the human
// re-approved, and not after the chain has expired); a renewal a limit does
// not fit suspends the subscription, charges nothing, and the human hears of
// it; a later try, once the human has raised the limit, resumes it.
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { tokenRequest } from '../support/fake-orchestrator';
import { activeMandate, call, newPrincipal, notificationsOf, ORCHESTRATOR, signedIn, type Agent, type Human } from '../support/orchestrator-client';
import { paidCall, tokenRead, type Json } from '../support/paid-calls';
import { PROVIDER_PORT, type BothRoles } from './both-roles';

const both = env as unknown as BothRoles;
const PAID = { amount: 500, currency: 'usd' };

beforeEach(() => {
  // Each role fetches the other's keys at its URL (jwks-cache.ts): those URLs are this Worker.
  const original = globalThis.fetch;
  vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
    const request = new Request(input, init);
    return ['8787', PROVIDER_PORT].includes(new URL(request.url).port) ? exports.default.fetch(request) : original(input, init);
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

/** A human with an agent whose mandate allows the service, and what it bought (Workers Paid unless told), its first charge captured. */
async function subscribed(bought: { service: string; plan: string; parameters: Json; expected_price: typeof PAID } = { service: 'workers-paid', plan: 'paid', parameters: {}, expected_price: PAID }) {
  const human = await newPrincipal();
  const { agent, mandate_id } = await activeMandate(human, undefined, { scope: [{ provider: 'cloud', services: [bought.service] }] });
  const token = await providerToken(agent, mandate_id);
  const created = await paidCall(token, 'POST', '/v1/resources', bought);
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  // Captured off the request's path, by the provider's outbox (its alarm, on the real clock still).
  await vi.waitFor(async () => expect((await charges(human)).find((c) => c.charge_id === created.body.charge_id)?.status).toBe('captured'), { timeout: 10_000, interval: 100 });
  return { human, agent, mandate_id, account: token.account, resource: created.body as Json };
}

const providerLedger = (account: string) => both.PROVIDER_LEDGER.get(both.PROVIDER_LEDGER.idFromName(account));
const principalLedger = (human: Human) => both.LEDGER.get(both.LEDGER.idFromName(human.principal_id));

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
 * holds, the moved clock going on 5 s after each run (work put off a few seconds comes due). Alarms are set on
 * the real clock, which the moved one has left behind, so they are run here.
 */
async function providerWorksUntil(account: string, done: () => Promise<boolean>) {
  const ledger = providerLedger(account);
  for (let run = 0; run < 10; run++) {
    if (await done()) return;
    await runDurableObjectAlarm(ledger);
    vi.setSystemTime(Date.now() + 5000);
  }
  expect(await done(), 'the provider’s due work did not get there').toBe(true);
}

const renewalsOf = (all: Json[], chargeId: string) => all.filter((c) => c.receipt && decodeJwt(c.receipt).renewal_of === chargeId);

/** Runs the provider's due work until a renewal of `chargeId` is captured at the orchestrator; that renewal. */
async function capturedRenewal(account: string, session: Human, chargeId: string): Promise<Json> {
  await providerWorksUntil(account, async () => renewalsOf(await charges(session), chargeId).some((c) => c.status === 'captured'));
  return renewalsOf(await charges(session), chargeId)[0]!;
}

describe('recurring plans renewed through both roles', () => {
  it('renews at the boundary its receipt stated, not before, and again a period later, each charge captured with its receipt', async () => {
    const { human, agent, mandate_id, account, resource } = await subscribed();
    const firstCharge = (await charges(human)).find((c) => c.charge_id === resource.charge_id)!;
    const boundary = Date.parse(resource.renews_at);
    expect(decodeJwt(firstCharge.receipt).period_end).toBe(resource.renews_at);

    // An hour before the boundary the provider's due work renews nothing.
    clockAt(boundary - 3_600_000);
    await runDurableObjectAlarm(providerLedger(account));
    const again = await signedIn(human);
    expect(await charges(again)).toHaveLength(1);

    clockAt(boundary + 1000);
    const session = await signedIn(human);
    const renewal = await capturedRenewal(account, session, resource.charge_id);
    expect(renewal).toMatchObject({ status: 'captured', amount: 500, plan: 'paid', resource_ref: resource.resource_id, mandate_id });
    const renewedUntil = decodeJwt(renewal.receipt).period_end as string;
    expect(Date.parse(renewedUntil) - boundary).toBeGreaterThanOrEqual(28 * 86_400_000);
    expect(await atProvider(agent, mandate_id, resource.resource_id)).toMatchObject({ status: 'active', plan: 'paid', renews_at: renewedUntil });

    // The next period renews the renewal, at the end its receipt stated.
    clockAt(Date.parse(renewedUntil) + 1000);
    const later = await signedIn(human);
    await capturedRenewal(account, later, renewal.charge_id);
    const all = await charges(later);
    expect(all.filter((c) => c.resource_ref === resource.resource_id && c.status === 'captured')).toHaveLength(3);
    // Each renewal counted once, in the period it was made in.
    const limits = ((await (await call('/v1/limits', { headers: { cookie: later.cookie } })).json()) as { data: Json[] }).data;
    expect(limits.find((l) => l.scope === 'principal')?.spent).toEqual(PAID);
  });

  it('renews a domain a year on under the mandate the human re-approved before the first expired, its expiry moved with it', async () => {
    const name = `renewed-${crypto.randomUUID().slice(0, 8)}.com`;
    const com = { service: 'domain', plan: 'com-1y', parameters: { name }, expected_price: { amount: 1044, currency: 'usd' } };
    const { human, agent, mandate_id, account, resource } = await subscribed(com);
    const boundary = Date.parse(resource.renews_at);
    expect(boundary - Date.parse(resource.created)).toBeGreaterThan(364 * 86_400_000);

    // A mandate lasts a year at most (this one 300 days), so the human re-approves it (a successor, good for a year
    // from then) before it ends. A month before the domain's year is up, nothing renews it yet.
    clockAt(Date.parse(resource.created) + 250 * 86_400_000);
    const session = await signedIn(human);
    const successor = await activeMandate(session, agent, { supersedes: mandate_id, scope: [{ provider: 'cloud', services: ['domain'] }] });
    clockAt(boundary - 30 * 86_400_000);
    await runDurableObjectAlarm(providerLedger(account));
    expect(await charges(await signedIn(human))).toHaveLength(1);

    clockAt(boundary + 1000);
    const later = await signedIn(human);
    const renewal = await capturedRenewal(account, later, resource.charge_id);
    expect(renewal).toMatchObject({ amount: 1044, plan: 'com-1y', resource_ref: resource.resource_id, mandate_id: successor.mandate_id });
    const renewedUntil = decodeJwt(renewal.receipt).period_end as string;
    expect(Date.parse(renewedUntil) - boundary).toBeGreaterThanOrEqual(365 * 86_400_000);
    expect(await atProvider(agent, successor.mandate_id, resource.resource_id)).toMatchObject({ status: 'active', name, renews_at: renewedUntil, expires_at: renewedUntil });
  });

  it('does not renew under a mandate that has expired: the human is warned two weeks before it ends, then the domain is suspended for good, and the human is told', async () => {
    const name = `lapsed-${crypto.randomUUID().slice(0, 8)}.com`;
    const { human, mandate_id, account, resource } = await subscribed({ service: 'domain', plan: 'com-1y', parameters: { name }, expected_price: { amount: 1044, currency: 'usd' } });
    const { expires_at } = (await (await call(`/v1/mandates/${mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { expires_at: string };
    // Thirteen days before the mandate ends, the orchestrator's due work tells the human what will not renew.
    clockAt(Date.parse(expires_at) - 13 * 86_400_000);
    await runDurableObjectAlarm(principalLedger(human));
    const warned = await signedIn(human);
    const expiring = await notificationsOf(warned, 'mandate.expiring');
    expect(expiring.map((n) => n.data)).toEqual([{ mandate_id, expires_at, resources: [{ provider: 'cloud', service: 'domain', plan: 'com-1y', resource_ref: resource.resource_id }] }]);
    const page = await (await call('/dashboard/notifications', { headers: { cookie: warned.cookie, accept: 'text/html' } })).text();
    expect(page).toContain('Mandate ending:');
    expect(page).toContain('domain com-1y at OAP Cloud');

    clockAt(Date.parse(resource.renews_at) + 1000);
    const session = await signedIn(human);
    const ledger = providerLedger(account);
    await runDurableObjectAlarm(ledger);
    expect((await charges(session)).map((c) => c.charge_id)).toEqual([resource.charge_id]);
    expect((await notificationsOf(session, 'renewal.declined')).map((n) => n.data.code)).toEqual(['mandate_inactive']);
    // The agent's mandate is over, so it reads its resource no more; the provider's ledger says it.
    const row = await runInDurableObject(ledger, (_, s) => s.storage.sql.exec<{ status: string; renews_at: number | null }>('SELECT status, renews_at FROM resources WHERE id = ?', resource.resource_id).one());
    expect(row).toEqual({ status: 'suspended', renews_at: null });
  });

  it('after plan changes mid-period, renews at the same boundary, at the new plan’s full price, naming the last change’s charge', async () => {
    const { human, agent, mandate_id, account, resource } = await subscribed();
    // A week into the period: down to free (a credit), then back to paid (the pro-rata rest of the period).
    clockAt(Date.parse(resource.created) + 7 * 86_400_000);
    const down = await paidCall(await providerToken(agent, mandate_id), 'PATCH', `/v1/resources/${resource.resource_id}`, { plan: 'free', expected_price: { amount: 0, currency: 'usd' } });
    expect(down.status, JSON.stringify(down.body)).toBe(200);
    const up = await paidCall(await providerToken(agent, mandate_id), 'PATCH', `/v1/resources/${resource.resource_id}`, { plan: 'paid', expected_price: PAID });
    expect(up.status, JSON.stringify(up.body)).toBe(200);
    expect(up.body.charged.amount).toBeLessThan(500);
    // Both changes captured before the boundary (the provider's outbox, run here: its alarm is on the real clock).
    const session = await signedIn(human);
    await providerWorksUntil(account, async () => (await charges(session)).filter((c) => c.status === 'captured' || c.status === 'refunded').length === 3);
    // The period's end did not move: the changes paid for the rest of it.
    expect((await atProvider(agent, mandate_id, resource.resource_id)).renews_at).toBe(resource.renews_at);

    clockAt(Date.parse(resource.renews_at) + 1000);
    const later = await signedIn(human);
    const renewal = await capturedRenewal(account, later, up.body.charge_id);
    expect(renewal).toMatchObject({ amount: 500, plan: 'paid', resource_ref: resource.resource_id });
    expect(await atProvider(agent, mandate_id, resource.resource_id)).toMatchObject({ status: 'active', plan: 'paid', renews_at: decodeJwt(renewal.receipt).period_end });
  });

  it('a renewal whose capture came after the orchestrator’s hold ran out is not paid: suspended, tried again of the charge it renewed, resumed', async () => {
    const { human, agent, mandate_id, account, resource } = await subscribed();
    const provider = providerLedger(account);
    const orchestrator = principalLedger(human);
    // The renewal is authorized, and its capture is not sent before the hold at the orchestrator has run out.
    clockAt(Date.parse(resource.renews_at) + 1000);
    await runDurableObjectAlarm(provider);
    const session = await signedIn(human);
    // Authorized, not captured: no receipt names what it renews yet.
    const tried = (await charges(session)).find((c) => c.charge_id !== resource.charge_id);
    expect(tried).toMatchObject({ status: 'authorized', resource_ref: resource.resource_id });
    clockAt(Date.now() + 11 * 60_000);
    await runDurableObjectAlarm(orchestrator);
    expect((await charges(session)).find((c) => c.charge_id === tried!.charge_id)?.status).toBe('voided');
    await providerWorksUntil(account, async () => (await atProvider(agent, mandate_id, resource.resource_id)).status === 'suspended');

    // The next try renews the charge the voided one renewed, and the orchestrator takes it.
    clockAt(Date.parse((await atProvider(agent, mandate_id, resource.resource_id)).renews_at) + 1000);
    const later = await signedIn(human);
    await capturedRenewal(account, later, resource.charge_id);
    expect(await atProvider(agent, mandate_id, resource.resource_id)).toMatchObject({ status: 'active', plan: 'paid' });
    expect((await charges(later)).filter((c) => c.resource_ref === resource.resource_id).map((c) => c.status).sort()).toEqual(['captured', 'captured', 'voided']);
  });

  it('after the human re-approved the mandate, renews under the successor, and the subscription stays active', async () => {
    const { human, agent, mandate_id, account, resource } = await subscribed();
    const successor = await activeMandate(human, agent, { supersedes: mandate_id, scope: [{ provider: 'cloud', services: ['workers-paid'] }], spend_limit: { amount: 8000, currency: 'usd', period: 'month' } });

    clockAt(Date.parse(resource.renews_at) + 1000);
    const session = await signedIn(human);
    const renewal = await capturedRenewal(account, session, resource.charge_id);
    expect(renewal).toMatchObject({ status: 'captured', mandate_id: successor.mandate_id });
    expect(decodeJwt(renewal.receipt).mandate_id).toBe(successor.mandate_id);
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
    // Its agent reads why, and where the human raises the limit: the orchestrator's limits page, as its decline said.
    expect(suspended.suspension).toEqual({ code: 'spend_limit_exceeded', by: 'orchestrator', step_up_url: `${ORCHESTRATOR}/dashboard/limits`, since: new Date(boundary + 1000).toISOString() });
    clockAt(Date.parse(suspended.renews_at) + 1000);
    await providerWorksUntil(account, async () => Date.parse((await atProvider(agent, mandate_id, resource.resource_id)).renews_at) > Date.now());
    const session = await signedIn(human);
    expect((await charges(session)).map((c) => c.charge_id)).toEqual([resource.charge_id]);
    expect(await notificationsOf(session, 'renewal.declined')).toEqual([
      expect.objectContaining({ data: expect.objectContaining({ renewal_of: resource.charge_id, resource_ref: resource.resource_id, code: 'spend_limit_exceeded' }) }),
    ]);

    // The human raises the limit again: the next try renews it, for a whole period from then.
    expect((await setLimit(session, 10_000)).status).toBe(200);
    const nextTry = Date.parse((await atProvider(agent, mandate_id, resource.resource_id)).renews_at);
    clockAt(nextTry + 1000);
    const later = await signedIn(human);
    await capturedRenewal(account, later, resource.charge_id);
    const resumed = await atProvider(agent, mandate_id, resource.resource_id);
    expect(resumed).toMatchObject({ status: 'active', plan: 'paid' });
    // A month from the try that resumed it, not from the boundary it missed.
    const resumedAt = new Date(nextTry + 1000);
    const monthLater = Date.UTC(resumedAt.getUTCFullYear(), resumedAt.getUTCMonth() + 1, resumedAt.getUTCDate(), resumedAt.getUTCHours(), resumedAt.getUTCMinutes(), resumedAt.getUTCSeconds());
    expect(resumed.renews_at).toBe(new Date(monthLater).toISOString());
    expect(await notificationsOf(later, 'renewal.declined')).toHaveLength(1);
  });
});
