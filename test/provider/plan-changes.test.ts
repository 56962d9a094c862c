// PATCH /v1/resources/{id} (PROTOCOL.md §3.1 "Also", §3.2): a recurring plan
// changed along allowed_updates, charged or credited pro rata through the same
// charge path, against the stand-in orchestrator. The billing period's end is
// set in the ledger so that the pro-rata amounts are known.
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { decodeJwt } from 'jose';
import { describe, expect, it, vi } from 'vitest';
import { agentWithToken, paidCall, type TokenAgent } from '../support/paid-calls';
import { useFakeOrchestrator } from '../support/fake-orchestrator';
import { backendFor } from '../../workers/provider/services';

useFakeOrchestrator();

const testEnv = env as unknown as TestEnv & { ORCHESTRATOR: Fetcher };
const ledgerOf = (account: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(account));
type Json = Record<string, any>;
type Call = { path: string; body: string };

const behave = (sub: string, behaviour: Record<string, string>) =>
  testEnv.ORCHESTRATOR.fetch('http://127.0.0.1:8787/_test/behaviour', { method: 'POST', body: JSON.stringify({ sub, ...behaviour }) });
const orchestratorCalls = async (sub: string) => (await (await testEnv.ORCHESTRATOR.fetch(`http://127.0.0.1:8787/_test/calls?sub=${sub}`)).json()) as Call[];
const authorizations = async (sub: string) => (await orchestratorCalls(sub)).filter((c) => c.path === '/v1/charges').map((c) => JSON.parse(c.body) as Json);

const PAID = { amount: 500, currency: 'usd' };
const FREE = { amount: 0, currency: 'usd' };

async function subscriber(plan: 'paid' | 'free') {
  const agent = await agentWithToken({
    claims: {
      authorization_details: [
        { type: 'oap_mandate', mandate_id: 'mdt_plans', services: ['workers-paid'], max_per_charge: null, spend_limit: { amount: 5000, currency: 'usd', period: 'month' }, expires_at: new Date(Date.now() + 90 * 86_400_000).toISOString() },
      ],
    },
  });
  const created = await paidCall(agent, 'POST', '/v1/resources', { service: 'workers-paid', plan, expected_price: plan === 'paid' ? PAID : FREE });
  expect(created.status, JSON.stringify(created.body)).toBe(201);
  // The creation's capture settles first, so that what follows is about the change alone.
  await vi.waitFor(async () => expect(await ledgerOf(agent.account).pendingChargeCalls()).toEqual([]), { timeout: 5000 });
  return { agent, resourceId: created.body.resource_id as string, chargeId: created.body.charge_id as string };
}

/** One calendar month before `ms`, as a period boundary is counted (written out here, not taken from the code under test). */
function monthBefore(ms: number) {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() - 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds());
}

/**
 * Puts the period's end where `fraction` of the period remains, and returns
 * the pro-rata difference the change must come to. The few milliseconds
 * between here and the request move it by far less than a cent.
 */
async function periodRemaining(account: string, resourceId: string, fraction: number, difference: number) {
  let renewsAt = Date.now() + 15 * 86_400_000;
  for (let i = 0; i < 3; i++) renewsAt = Date.now() + Math.round(fraction * (renewsAt - monthBefore(renewsAt)));
  await runInDurableObject(ledgerOf(account), (_, s) => void s.storage.sql.exec('UPDATE resources SET renews_at = ? WHERE id = ?', renewsAt, resourceId));
  return Math.round((difference * (renewsAt - Date.now())) / (renewsAt - monthBefore(renewsAt)));
}

const change = (agent: Pick<TokenAgent, 'key' | 'token'>, resourceId: string, body: unknown, key?: string) => paidCall(agent, 'PATCH', `/v1/resources/${resourceId}`, body, key);

async function ledgerState(account: string, resourceId: string) {
  return runInDurableObject(ledgerOf(account), (_, s) => {
    const sql = s.storage.sql;
    return {
      resource: sql.exec<{ plan: string; status: string; charge_id: string; renews_at: number }>('SELECT plan, status, charge_id, renews_at FROM resources WHERE id = ?', resourceId).one(),
      holds: sql.exec<{ status: string; amount: number; refunded: number; plan: string }>('SELECT status, amount, refunded, plan FROM holds ORDER BY created, rowid').toArray(),
      sagas: sql.exec<{ kind: string; state: string }>('SELECT kind, state FROM sagas ORDER BY created, rowid').toArray(),
      owed: sql.exec<{ action: string; charge_id: string; body: string | null }>('SELECT action, charge_id, body FROM charge_outbox ORDER BY id').toArray(),
      events: sql.exec<{ event: string }>('SELECT event FROM audit_outbox ORDER BY seq').toArray().map((r) => JSON.parse(r.event) as Json),
    };
  });
}

/** Alarm passes, each after `prepare` has brought work forward, until `check` holds (the object's own alarm may be mid-task). */
async function passesUntil(account: string, prepare: (sql: SqlStorage) => void, check: () => Promise<void>) {
  const ledger = ledgerOf(account);
  await vi.waitFor(
    async () => {
      await runInDurableObject(ledger, async (_, s) => {
        prepare(s.storage.sql);
        await s.storage.setAlarm(Date.now());
      });
      await runDurableObjectAlarm(ledger);
      await check();
    },
    { timeout: 10_000, interval: 50 },
  );
}

/** Makes `tasks` of the ledger's alarm due now. */
const dueNow = (sql: SqlStorage, ...tasks: string[]) =>
  sql.exec(`INSERT INTO schedule (task, due_at) VALUES ${tasks.map(() => '(?, 0)').join(', ')} ON CONFLICT (task) DO UPDATE SET due_at = 0`, ...tasks);

/** Alarm passes, every owed call and deadline brought forward, until `check` holds. */
const settles = (account: string, check: () => Promise<void>) =>
  passesUntil(
    account,
    (sql) => {
      sql.exec(`UPDATE sagas SET deadline = 0 WHERE state IN ('reserved', 'authorized')`);
      sql.exec('UPDATE charge_outbox SET next_attempt_at = 0');
      dueNow(sql, 'saga_recovery', 'charge_outbox');
    },
    check,
  );

describe('PATCH /v1/resources/{id}: upgrade', () => {
  it('free → paid mid-period charges the pro-rata difference, captured at the orchestrator; the resource is on paid', async () => {
    const { agent, resourceId } = await subscriber('free');
    const expected = await periodRemaining(agent.account, resourceId, 0.3, 500);
    expect(expected).toBe(150);
    const res = await change(agent, resourceId, { plan: 'paid', expected_price: PAID });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ resource_id: resourceId, plan: 'paid', status: 'active', subscription: 'paid', charged: { amount: expected, currency: 'usd' }, credited: { amount: 0 } });
    expect(res.body.receipt).toEqual(expect.any(String));
    // It pays for the rest of the period, which ends where the plan renews, as before the change.
    const renewsAt = (await ledgerState(agent.account, resourceId)).resource.renews_at;
    expect(decodeJwt(res.body.receipt as string)).toMatchObject({ charge_id: res.body.charge_id, period_end: new Date(renewsAt).toISOString() });

    const [, upgrade] = await authorizations(agent.sub);
    expect(upgrade).toMatchObject({ service: 'workers-paid', plan: 'paid', amount: expected, resource_ref: resourceId, agent_request: { method: 'PATCH', target_uri: `http://127.0.0.1:8788/v1/resources/${resourceId}` } });
    expect(JSON.parse(upgrade!.agent_request.body)).toEqual({ plan: 'paid', expected_price: PAID });

    await settles(agent.account, async () => expect((await ledgerState(agent.account, resourceId)).owed).toEqual([]));
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toContain(`/v1/charges/${res.body.charge_id}/capture`);
    const s = await ledgerState(agent.account, resourceId);
    expect(s.resource).toMatchObject({ plan: 'paid', status: 'active', charge_id: res.body.charge_id });
    expect(s.holds).toEqual([
      { status: 'captured', amount: 0, refunded: 0, plan: 'free' },
      { status: 'captured', amount: expected, refunded: 0, plan: 'paid' },
    ]);
    expect(s.events.filter((e) => e.action === 'resource.update')).toMatchObject([{ outcome: 'succeeded', amount: { amount: expected }, actor: { type: 'agent' } }]);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(expected);
  });

  it('a refused authorization leaves the plan unchanged and charges nothing', async () => {
    const { agent, resourceId, chargeId } = await subscriber('free');
    await periodRemaining(agent.account, resourceId, 0.5, 500);
    await behave(agent.sub, { authorize: 'decline' });
    const res = await change(agent, resourceId, { plan: 'paid', expected_price: PAID });
    expect(res.status).toBe(402);
    expect(res.body.code).toBe('spend_limit_exceeded');
    const s = await ledgerState(agent.account, resourceId);
    expect(s.resource).toMatchObject({ plan: 'free', status: 'active', charge_id: chargeId });
    expect(s.holds.map((h) => h.status)).toEqual(['captured', 'voided']);
    expect(s.sagas).toEqual([
      { kind: 'create', state: 'completed' },
      { kind: 'update', state: 'voided' },
    ]);
    expect(s.owed).toEqual([]);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(0);
    expect(s.events.filter((e) => e.action === 'resource.update')).toMatchObject([{ outcome: 'failed' }]);
  });

  it('replayed with the same Idempotency-Key (or after its record was lost) is one charge', async () => {
    const { agent, resourceId } = await subscriber('free');
    await periodRemaining(agent.account, resourceId, 0.5, 500);
    const first = await change(agent, resourceId, { plan: 'paid', expected_price: PAID }, 'upgrade-once');
    const replay = await change(agent, resourceId, { plan: 'paid', expected_price: PAID }, 'upgrade-once');
    expect([first.status, replay.status]).toEqual([200, 200]);
    expect(replay.body).toEqual(first.body);
    await runInDurableObject(ledgerOf(agent.account), (_, s) => void s.storage.sql.exec('DELETE FROM idempotency'));
    const lost = await change(agent, resourceId, { plan: 'paid', expected_price: PAID }, 'upgrade-once');
    expect(lost.status).toBe(200);
    expect(lost.body).toMatchObject({ charge_id: first.body.charge_id, audit_event_id: first.body.audit_event_id, charged: first.body.charged });
    expect(await authorizations(agent.sub)).toHaveLength(2); // the creation and one change
    expect((await ledgerState(agent.account, resourceId)).holds).toHaveLength(2);
  });

  it('a capture the orchestrator refuses (voided there first) puts the old plan back and keeps the resource', async () => {
    const { agent, resourceId, chargeId } = await subscriber('free');
    await periodRemaining(agent.account, resourceId, 0.5, 500);
    await behave(agent.sub, { capture: 'voided' });
    const res = await change(agent, resourceId, { plan: 'paid', expected_price: PAID });
    expect(res.status).toBe(200);
    await settles(agent.account, async () => expect((await ledgerState(agent.account, resourceId)).resource.plan).toBe('free'));
    const s = await ledgerState(agent.account, resourceId);
    expect(s.resource).toMatchObject({ status: 'active', charge_id: chargeId });
    expect(s.holds.map((h) => h.status)).toEqual(['captured', 'refunded']);
    expect(s.sagas.at(-1)).toEqual({ kind: 'update', state: 'voided' });
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(0);
  });
});

describe('PATCH /v1/resources/{id}: downgrade', () => {
  it('paid → free is a $0 charge, then a pro-rata credit: the local hold partly refunded, the refund owed to the orchestrator', async () => {
    const { agent, resourceId, chargeId } = await subscriber('paid');
    const expected = await periodRemaining(agent.account, resourceId, 0.4, -500);
    expect(expected).toBe(-200);
    const res = await change(agent, resourceId, { plan: 'free', expected_price: FREE });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    expect(res.body).toMatchObject({ plan: 'free', charged: { amount: 0 }, credited: { amount: 200, currency: 'usd' } });
    expect((await authorizations(agent.sub))[1]).toMatchObject({ plan: 'free', amount: 0, agent_request: { method: 'PATCH' } });

    await settles(agent.account, async () => expect((await ledgerState(agent.account, resourceId)).owed).toEqual([]));
    const refund = (await orchestratorCalls(agent.sub)).find((c) => c.path === `/v1/charges/${chargeId}/refund`);
    expect(JSON.parse(refund!.body)).toMatchObject({ amount: 200, currency: 'usd', reason: 'plan_change_credit', idempotency_key: expect.any(String) });
    const s = await ledgerState(agent.account, resourceId);
    expect(s.holds).toEqual([
      { status: 'captured', amount: 500, refunded: 200, plan: 'paid' },
      { status: 'captured', amount: 0, refunded: 0, plan: 'free' },
    ]);
    expect(s.resource).toMatchObject({ plan: 'free', charge_id: res.body.charge_id });
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(300);
    expect(s.events.filter((e) => e.action === 'charge.refund')).toMatchObject([{ outcome: 'succeeded', amount: { amount: 200 } }]);
  });

  it('the credit waits for the change’s capture: while it is refused, nothing is refunded', async () => {
    const { agent, resourceId } = await subscriber('paid');
    await periodRemaining(agent.account, resourceId, 0.4, -500);
    await behave(agent.sub, { capture: 'error' });
    const res = await change(agent, resourceId, { plan: 'free', expected_price: FREE });
    expect(res.status).toBe(200);
    const before = await ledgerState(agent.account, resourceId);
    expect(before.owed.map((o) => o.action)).toEqual(['capture']);
    expect(before.holds[0]).toMatchObject({ refunded: 0 });
    await behave(agent.sub, { capture: 'ok' });
    await settles(agent.account, async () => expect((await ledgerState(agent.account, resourceId)).owed).toEqual([]));
    expect((await ledgerState(agent.account, resourceId)).holds[0]).toMatchObject({ refunded: 200 });
  });
});

describe('PATCH /v1/resources/{id}: refusals', () => {
  it('same plan or one outside allowed_updates is 422, another price 409 price_changed, someone else’s 404, a body without expected_price 422', async () => {
    const { agent, resourceId } = await subscriber('paid');
    expect(await change(agent, resourceId, { plan: 'paid', expected_price: PAID })).toMatchObject({ status: 422, body: { code: 'invalid_parameters' } });
    expect(await change(agent, resourceId, { plan: 'enterprise', expected_price: PAID })).toMatchObject({ status: 422, body: { code: 'invalid_parameters' } });
    expect(await change(agent, resourceId, { plan: 'free', expected_price: { amount: 100, currency: 'usd' } })).toMatchObject({ status: 409, body: { code: 'price_changed', price: FREE } });
    expect((await change(agent, resourceId, { plan: 'free' })).status).toBe(422);
    const stranger = await agentWithToken({
      claims: { authorization_details: [{ type: 'oap_mandate', mandate_id: 'mdt_other', services: ['workers-paid'], max_per_charge: null, spend_limit: { amount: 5000, currency: 'usd', period: 'month' }, expires_at: new Date(Date.now() + 86_400_000).toISOString() }] },
    });
    expect((await change(stranger, resourceId, { plan: 'free', expected_price: FREE })).status).toBe(404);
    expect(await authorizations(agent.sub)).toHaveLength(1);
    expect((await ledgerState(agent.account, resourceId)).resource.plan).toBe('paid');
  });

  it('a deleted resource is 404, a suspended one 409', async () => {
    const { agent, resourceId } = await subscriber('paid');
    await runInDurableObject(ledgerOf(agent.account), (_, s) => void s.storage.sql.exec(`UPDATE resources SET status = 'suspended' WHERE id = ?`, resourceId));
    expect((await change(agent, resourceId, { plan: 'free', expected_price: FREE })).status).toBe(409);
    await runInDurableObject(ledgerOf(agent.account), (_, s) => void s.storage.sql.exec(`UPDATE resources SET status = 'deleted' WHERE id = ?`, resourceId));
    expect((await change(agent, resourceId, { plan: 'free', expected_price: FREE })).status).toBe(404);
  });
});

/** Alarm passes until the resource's renewal has happened one way or the other. */
async function renewNow(account: string, resourceId: string) {
  await runInDurableObject(ledgerOf(account), (_, s) => void s.storage.sql.exec('UPDATE resources SET renews_at = ? WHERE id = ?', Date.now() - 1000, resourceId));
  await passesUntil(
    account,
    (sql) => dueNow(sql, 'renewals'),
    async () => {
      // Every try moves the next one on.
      const { resource } = await ledgerState(account, resourceId);
      expect(resource.renews_at > Date.now()).toBe(true);
    },
  );
}

describe('renewal after a plan change (§3.2)', () => {
  it('renews at the new plan’s full price, naming the change’s charge', async () => {
    const { agent, resourceId } = await subscriber('free');
    await periodRemaining(agent.account, resourceId, 0.5, 500);
    const upgraded = await change(agent, resourceId, { plan: 'paid', expected_price: PAID });
    expect(upgraded.status).toBe(200);
    await settles(agent.account, async () => expect((await ledgerState(agent.account, resourceId)).owed).toEqual([]));

    await renewNow(agent.account, resourceId);
    const renewal = (await authorizations(agent.sub))[2];
    expect(renewal).toMatchObject({ service: 'workers-paid', plan: 'paid', amount: 500, resource_ref: resourceId, renewal_of: upgraded.body.charge_id });
    expect(renewal).not.toHaveProperty('agent_request');
    const s = await ledgerState(agent.account, resourceId);
    expect(s.resource).toMatchObject({ plan: 'paid', status: 'active' });
    expect(s.holds.at(-1)).toMatchObject({ status: 'captured', amount: 500, plan: 'paid' });
  });
});

describe('a renewal the limits refuse (§3.2)', () => {
  it('suspends the resource and tells its backend to stop what it costs, once; a later try paid, the backend serves it again', async () => {
    const { agent, resourceId } = await subscriber('paid');
    const backend = backendFor('workers-paid')!;
    const suspended: string[] = [];
    const renewed: string[] = [];
    backend.suspend = async (_env, ref) => void suspended.push(ref.resource_id);
    backend.renew = async (_env, ref) => {
      renewed.push(ref.resource_id);
      return ref.fields;
    };
    try {
      await behave(agent.sub, { authorize: 'decline' });
      await renewNow(agent.account, resourceId);
      expect((await ledgerState(agent.account, resourceId)).resource.status).toBe('suspended');
      // Declined again while suspended: the backend is not told twice.
      await renewNow(agent.account, resourceId);
      expect(suspended).toEqual([resourceId]);
      expect(renewed).toEqual([]);
      await behave(agent.sub, { authorize: 'ok' });
      await renewNow(agent.account, resourceId);
    } finally {
      delete backend.suspend;
      delete backend.renew;
    }
    expect((await ledgerState(agent.account, resourceId)).resource.status).toBe('active');
    expect(renewed).toEqual([resourceId]);
  });
});

describe('a paid renewal its backend fails to take', () => {
  it('stays owed to the backend, tried again until it takes it; the renewal is paid and the resource active meanwhile', async () => {
    const { agent, resourceId } = await subscriber('paid');
    const ledger = ledgerOf(agent.account);
    const backend = backendFor('workers-paid')!;
    let failures = 1;
    const renewed: string[] = [];
    backend.renew = async (_env, ref) => {
      if (failures-- > 0) throw new Error('backend unreachable');
      renewed.push(ref.resource_id);
      return { ...ref.fields, renewed_until: 'next period' };
    };
    const owed = () => runInDurableObject(ledger, (_, s) => s.storage.sql.exec<{ attempts: number }>('SELECT attempts FROM backend_renewals WHERE resource_id = ?', resourceId).toArray());
    try {
      await renewNow(agent.account, resourceId);
      expect(renewed).toEqual([]);
      expect(await owed()).toEqual([{ attempts: 1 }]);
      expect((await ledgerState(agent.account, resourceId)).resource.status).toBe('active');
      // The retry, brought forward.
      await passesUntil(
        agent.account,
        (sql) => {
          sql.exec('UPDATE backend_renewals SET next_attempt_at = 0');
          dueNow(sql, 'backend_renewals');
        },
        async () => expect(await owed()).toEqual([]),
      );
    } finally {
      delete backend.renew;
    }
    expect(renewed).toEqual([resourceId]);
    const fields = await runInDurableObject(ledger, (_, s) => s.storage.sql.exec<{ fields: string }>('SELECT fields FROM resources WHERE id = ?', resourceId).one().fields);
    expect(JSON.parse(fields)).toMatchObject({ renewed_until: 'next period' });
  });
});

describe('a resource deleted while its renewal is being authorized', () => {
  it('is not charged for the period: the renewal is voided on both sides and the boundary stays put', async () => {
    const { agent, resourceId } = await subscriber('paid');
    const ledger = ledgerOf(agent.account);
    await behave(agent.sub, { authorize: 'held' });
    await runInDurableObject(ledger, async (_, s) => {
      s.storage.sql.exec('UPDATE resources SET renews_at = ? WHERE id = ?', Date.now() - 1000, resourceId);
      s.storage.sql.exec(`INSERT INTO schedule (task, due_at) VALUES ('renewals', 0) ON CONFLICT (task) DO UPDATE SET due_at = 0`);
      await s.storage.setAlarm(Date.now());
    });
    const renewing = runDurableObjectAlarm(ledger);
    // The orchestrator has the renewal's authorization in hand when the agent deletes the resource.
    await vi.waitFor(async () => expect((await authorizations(agent.sub)).some((a) => a.renewal_of)).toBe(true), { timeout: 5000 });
    // Meanwhile the task keeps its schedule row, a lease ahead: an object reset now would run it again.
    const leased = await runInDurableObject(ledger, (_, s) => s.storage.sql.exec<{ due_at: number }>(`SELECT due_at FROM schedule WHERE task = 'renewals'`).toArray());
    expect(leased).toEqual([{ due_at: expect.any(Number) }]);
    expect(leased[0]!.due_at).toBeGreaterThan(Date.now());
    const deleted = await paidCall(agent, 'DELETE', `/v1/resources/${resourceId}`);
    expect(deleted.body.status).toBe('deleted');
    await testEnv.ORCHESTRATOR.fetch('http://127.0.0.1:8787/_test/release', { method: 'POST', body: JSON.stringify({ sub: agent.sub }) });
    await renewing;

    await settles(agent.account, async () => expect((await ledgerState(agent.account, resourceId)).owed).toEqual([]));
    const s = await ledgerState(agent.account, resourceId);
    expect(s.resource.status).toBe('deleted');
    expect(s.holds.at(-1)).toMatchObject({ status: 'voided', amount: 500 });
    const calls = (await orchestratorCalls(agent.sub)).map((c) => c.path);
    expect(calls.filter((p) => p.endsWith('/void'))).toHaveLength(1);
    expect(calls.filter((p) => p.endsWith('/capture'))).toHaveLength(1); // the creation's, not the renewal's
  });
});

