// The provisioning saga at a provider (PROTOCOL.md §3.1, DESIGN.md "Money and
// order"), against a stand-in for the orchestrator's charges API whose
// behaviour each test sets, with failures injected at every step boundary:
// whatever happens, the end is a resource with both charges captured, or no
// resource with both voided, within one alarm cycle.
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { createLocalJWKSet, decodeJwt, jwtVerify, type JSONWebKeySet } from 'jose';
import { describe, expect, it, vi } from 'vitest';
import { auditEventHash, type AuditEvent } from '../../workers/lib/audit';
import { newAgentKey } from '../support/agent-keys';
import { call, EVENT, now, obtainToken, orchestratorKey, postSecurityEvent, PROVIDER, publishEs256OrchestratorKey, signCompact, signSecurityEvent, useFakeOrchestrator } from '../support/fake-orchestrator';
import { agentWithToken, paidCall, tokenRead, type TokenAgent } from '../support/paid-calls';

useFakeOrchestrator();

const testEnv = env as unknown as TestEnv & { ORCHESTRATOR: Fetcher };
const ledgerOf = (account: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(account));
type Json = Record<string, any>;


const behave = (sub: string, behaviour: Record<string, string>) =>
  testEnv.ORCHESTRATOR.fetch('http://127.0.0.1:8787/_test/behaviour', { method: 'POST', body: JSON.stringify({ sub, ...behaviour }) });
const orchestratorCalls = async (sub: string) => (await (await testEnv.ORCHESTRATOR.fetch(`http://127.0.0.1:8787/_test/calls?sub=${sub}`)).json()) as { method: string; path: string; body: string }[];

const paid = (agent: Pick<TokenAgent, 'key' | 'token'>, body: unknown, key?: string) => paidCall(agent, 'POST', '/v1/resources', body, key);

/**
 * Runs one alarm pass of the account's ledger now. The object's own alarm may
 * be running at the same moment (it fires in real time): wait until this pass
 * is the one that ran.
 */
async function runAlarmPass(account: string, prepare: (sql: SqlStorage) => void) {
  const ledger = ledgerOf(account);
  for (let attempt = 0; attempt < 50; attempt++) {
    await runInDurableObject(ledger, async (_, state) => {
      prepare(state.storage.sql);
      await state.storage.setAlarm(Date.now());
    });
    if (await runDurableObjectAlarm(ledger)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('the alarm never ran');
}

/** Everything the alarm would do later, now: every deadline and retry brought forward, one alarm run. */
async function alarmNow(account: string) {
  await runAlarmPass(account, (sql) => {
    sql.exec(`UPDATE sagas SET deadline = 0 WHERE state IN ('reserved', 'authorized', 'recovering')`);
    sql.exec('UPDATE charge_outbox SET next_attempt_at = 0');
    sql.exec(`INSERT INTO schedule (task, due_at) VALUES ('saga_recovery', 0), ('charge_outbox', 0) ON CONFLICT (task) DO UPDATE SET due_at = 0`);
  });
}

/**
 * Alarm passes until `check` holds: the object's own alarm may be running a
 * task when the test's pass comes, and then the pass defers it.
 */
async function settles(account: string, check: () => Promise<void>) {
  await vi.waitFor(
    async () => {
      await alarmNow(account);
      await check();
    },
    { timeout: 10_000, interval: 50 },
  );
}

async function state(account: string) {
  return runInDurableObject(ledgerOf(account), (_, s) => {
    const sql = s.storage.sql;
    return {
      holds: sql.exec<{ status: string; amount: number }>('SELECT status, amount FROM holds').toArray(),
      sagas: sql.exec<{ state: string; charge_id: string | null }>('SELECT state, charge_id FROM sagas').toArray(),
      resources: sql.exec<{ id: string; status: string }>('SELECT id, status FROM resources').toArray(),
      owed: sql.exec<{ action: string }>('SELECT action FROM charge_outbox').toArray(),
    };
  });
}

/** What a domain backend does first when it provisions: claim the name. A test then lets the process die. */
const claimName = (name: string, account: string, resourceId: string) =>
  testEnv.DB.prepare(`INSERT INTO service_names (kind, name, account_id, resource_id, created_at) VALUES ('domain', ?1, ?2, ?3, ?4)`).bind(name, account, resourceId, new Date().toISOString()).run();

/** Recovery has run its course on a half-made creation: the name released, the saga and its local hold voided, nothing owed. */
async function takenDownAndVoided(account: string, name: string) {
  await settles(account, async () => {
    const now = await state(account);
    expect(now.sagas[0]!.state).toBe('voided');
    expect(now.owed).toEqual([]);
  });
  expect(await nameTaken(name)).toBe(false);
  const s = await state(account);
  expect(s.holds).toEqual([{ status: 'voided', amount: 1044 }]);
  expect(s.resources.map((r) => r.status)).toEqual(['failed']);
}

const nameTaken = async (name: string) => (await testEnv.DB.prepare(`SELECT 1 AS x FROM service_names WHERE kind = 'domain' AND name = ?1`).bind(name).first()) !== null;
const domain = () => `saga-${crypto.randomUUID().slice(0, 8)}.com`;

describe('the saga, step by step', () => {
  it('provisions, captures locally at once and at the orchestrator through the outbox', async () => {
    const agent = await agentWithToken();
    const name = domain();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name } });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ status: 'active', name, charge_id: expect.stringMatching(/^chg_fake/) });
    // The signed receipt carries the orchestrator's decision, as the authorization recorded it.
    expect(decodeJwt(res.body.receipt)).toMatchObject({ charge_id: res.body.charge_id, mandate_status_at_decision: 'active', constraint_results: [{ type: 'mandate_active', pass: true }] });
    const s = await state(agent.account);
    expect(s.holds).toEqual([{ status: 'captured', amount: 1044 }]);
    await settles(agent.account, async () => expect((await state(agent.account)).owed).toEqual([]));
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toEqual(['/v1/charges', `/v1/charges/${res.body.charge_id}/capture`]);
  });

  it('on a decline at the orchestrator: 402 as the orchestrator said, the local hold voided, nothing provisioned', async () => {
    const agent = await agentWithToken();
    await behave(agent.sub, { authorize: 'decline' });
    const name = domain();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name } });
    expect(res.status).toBe(402);
    expect(res.body).toMatchObject({ code: 'spend_limit_exceeded', limit: { amount: 100 }, step_up_url: 'http://127.0.0.1:8787/dashboard/limits' });
    const s = await state(agent.account);
    expect(s.holds).toEqual([{ status: 'voided', amount: 1044 }]);
    expect(s.resources.map((r) => r.status)).toEqual(['failed']);
    expect(await nameTaken(name)).toBe(false);
  });

  it('when the orchestrator fails: an error, the local hold voided, nothing provisioned', async () => {
    const agent = await agentWithToken();
    await behave(agent.sub, { authorize: 'error' });
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    expect(res.status).toBe(502);
    expect((await state(agent.account)).holds).toEqual([{ status: 'voided', amount: 1044 }]);
  });

  it('when the orchestrator cannot decide now (503 with Retry-After): the agent is told when to try again, the local hold voided, nothing provisioned', async () => {
    const agent = await agentWithToken();
    await behave(agent.sub, { authorize: 'busy' });
    const name = domain();
    const res = await paidCall(agent, 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name } });
    expect(res.status).toBe(503);
    expect(res.retryAfter).toBe('30');
    expect(await nameTaken(name)).toBe(false);
    expect((await state(agent.account)).holds).toEqual([{ status: 'voided', amount: 1044 }]);
  });

  it('when the orchestrator’s answer is lost after it authorized (a 504): the charge is found by the saga’s key and voided', async () => {
    const agent = await agentWithToken();
    await behave(agent.sub, { authorize: 'lost' });
    const name = domain();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name } });
    expect(res.status).toBe(502);
    const s = await state(agent.account);
    expect(s.holds).toEqual([{ status: 'voided', amount: 1044 }]);
    expect(await nameTaken(name)).toBe(false);
    // The lookup waits until the request that asked can no longer be taken (its token lives 60 s).
    const owed = await runInDurableObject(ledgerOf(agent.account), (_, st) => st.storage.sql.exec<{ action: string; next_attempt_at: number; body: string }>('SELECT action, next_attempt_at, body FROM charge_outbox').toArray());
    expect(owed).toEqual([expect.objectContaining({ action: 'void_by_key' })]);
    expect(owed[0]!.next_attempt_at - Date.now()).toBeGreaterThan(60_000);
    await settles(agent.account, async () => expect((await state(agent.account)).owed).toEqual([]));
    const calls = await orchestratorCalls(agent.sub);
    const sagaId = (JSON.parse(owed[0]!.body) as { idempotency_key: string }).idempotency_key;
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'POST /v1/charges',
      `GET /v1/charges?principal_sub=${encodeURIComponent(agent.sub)}&idempotency_key=${sagaId}`,
      expect.stringMatching(/^POST \/v1\/charges\/chg_fake\d+\/void$/),
    ]);
  });

  it('when provisioning fails after the authorization: both voided, the orchestrator told through the outbox', async () => {
    const agent = await agentWithToken();
    const name = domain();
    // The registry refuses this one name at provisioning time (after the precheck passed).
    await testEnv.DB.exec(`CREATE TRIGGER fail_${name.replace(/\W/g, '_')} BEFORE INSERT ON service_names WHEN NEW.name = '${name}' BEGIN SELECT RAISE(ABORT, 'registry down'); END`);
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name } });
    expect(res.status).toBe(502);
    const s = await state(agent.account);
    expect(s.holds).toEqual([{ status: 'voided', amount: 1044 }]);
    expect(s.owed.length).toBeLessThanOrEqual(1); // the void, unless the object's own alarm already sent it
    await settles(agent.account, async () => expect((await state(agent.account)).owed).toEqual([]));
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path.split('/').at(-1))).toEqual(['charges', 'void']);
    expect(await nameTaken(name)).toBe(false);
  });
});

describe('one Idempotency-Key, many tries', () => {
  it('is free again after its 24 hours: the same key then provisions anew, while within them it finds the first call', async () => {
    const agent = await agentWithToken();
    const key = crypto.randomUUID();
    const body = { service: 'domain', plan: 'com-1y', parameters: { name: domain() } };
    const first = await paid(agent, body, key);
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    // The key's record is gone (as after a crash): within the 24 hours the saga still answers for the key.
    await runInDurableObject(ledgerOf(agent.account), (_, s) => void s.storage.sql.exec('DELETE FROM idempotency'));
    const retried = await paid(agent, body, key);
    expect(retried.body.resource_id).toBe(first.body.resource_id);
    // A day later, the same key is a new call.
    await runInDurableObject(ledgerOf(agent.account), (_, s) => {
      s.storage.sql.exec('DELETE FROM idempotency');
      s.storage.sql.exec('UPDATE sagas SET created = created - ?', 24 * 60 * 60 * 1000 + 1000);
    });
    const later = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } }, key);
    expect(later.status, JSON.stringify(later.body)).toBe(201);
    expect(later.body.resource_id).not.toBe(first.body.resource_id);
  });

  it('replayed 5 times, interleaved: one charge; in flight: 409; the same answer after; another body: 422', async () => {
    const agent = await agentWithToken();
    const key = crypto.randomUUID();
    const body = { service: 'domain', plan: 'com-1y', parameters: { name: domain() } };
    // Five at once, each signed anew (a fresh nonce), with the same key.
    const concurrent = await Promise.all(Array.from({ length: 5 }, () => paid(agent, body, key)));
    const statuses = concurrent.map((r) => r.status).sort();
    expect(statuses.filter((st) => st === 201).length).toBeGreaterThanOrEqual(1);
    expect(statuses.every((st) => st === 201 || st === 409)).toBe(true);
    for (const r of concurrent.filter((r) => r.status === 409)) expect(r.body.code).toBe('idempotency_request_in_progress');
    const created = concurrent.find((r) => r.status === 201)!.body;
    // Afterwards, every retry is the first answer.
    for (let i = 0; i < 5; i++) {
      const again = await paid(agent, body, key);
      expect(again.status).toBe(201);
      expect(again.body).toEqual({ ...created, credentials_redacted: false });
    }
    expect((await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges')).toHaveLength(1);
    expect((await state(agent.account)).holds).toEqual([{ status: 'captured', amount: 1044 }]);
    const other = await paid(agent, { ...body, parameters: { name: domain() } }, key);
    expect(other.status).toBe(422);
    expect(other.body.code).toBe('idempotency_key_reused');
  });
});

describe('crashes at each step boundary, recovered by the alarm', () => {
  async function begin(agent: Awaited<ReturnType<typeof agentWithToken>>, name: string) {
    const ledger = ledgerOf(agent.account);
    const sagaId = `op_crash${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const resourceId = `res_crash${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const started = await ledger.beginSaga(agent.account, {
      saga_id: sagaId,
      resource_id: resourceId,
      hold_id: `hld_${sagaId.slice(3)}`,
      agent_id: 'agt_crash',
      mandate_id: 'mdt_crash',
      orchestrator: 'http://127.0.0.1:8787',
      principal_sub: agent.sub,
      token_jti: 'tok_crash',
      service: 'domain',
      plan: 'com-1y',
      price: { amount: 1044, currency: 'usd' },
      parameters: JSON.stringify({ name }),
      request: '{}',
      async: false,
      velocity: null,
    });
    expect(started.ok).toBe(true);
    return { ledger, sagaId, resourceId };
  }

  async function authorizeAtFake(sub: string, sagaId: string) {
    const res = await testEnv.ORCHESTRATOR.fetch('http://127.0.0.1:8787/v1/charges', { method: 'POST', body: JSON.stringify({ principal_sub: sub, idempotency_key: sagaId }) });
    return ((await res.json()) as { charge_id: string }).charge_id;
  }

  /** A paid creation whose authorization the orchestrator holds, asked already, until `release()`. */
  async function heldCreation(name: string) {
    const agent = await agentWithToken();
    await behave(agent.sub, { authorize: 'held' });
    const answer = paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name } });
    await vi.waitFor(async () => expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toEqual(['/v1/charges']), { timeout: 5000 });
    const release = () => testEnv.ORCHESTRATOR.fetch('http://127.0.0.1:8787/_test/release', { method: 'POST', body: JSON.stringify({ sub: agent.sub }) });
    return { agent, answer, release };
  }

  it('after the reserve (the process died before asking the orchestrator): the hold is voided, and the orchestrator found to hold nothing', async () => {
    const agent = await agentWithToken();
    await begin(agent, domain());
    await settles(agent.account, async () => {
      const now = await state(agent.account);
      expect(now.sagas).toEqual([{ state: 'voided', charge_id: null }]);
      expect(now.owed).toEqual([]);
    });
    const s = await state(agent.account);
    expect(s.holds).toEqual([{ status: 'voided', amount: 1044 }]);
    expect(s.resources.map((r) => r.status)).toEqual(['failed']);
    expect((await orchestratorCalls(agent.sub)).map((c) => `${c.method} ${c.path.split('?')[0]}`)).toEqual(['GET /v1/charges']);
  });

  it('while the orchestrator was asked (it authorized; the process died before its answer was recorded): the charge is found by the saga’s key and voided', async () => {
    const agent = await agentWithToken();
    const { sagaId } = await begin(agent, domain());
    const chargeId = await authorizeAtFake(agent.sub, sagaId);
    await settles(agent.account, async () => {
      const now = await state(agent.account);
      expect(now.sagas).toEqual([{ state: 'voided', charge_id: null }]);
      expect(now.owed).toEqual([]);
    });
    expect((await state(agent.account)).holds).toEqual([{ status: 'voided', amount: 1044 }]);
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toContain(`/v1/charges/${chargeId}/void`);
  });

  it('after the authorization (died before provisioning): both holds voided', async () => {
    const agent = await agentWithToken();
    const { ledger, sagaId } = await begin(agent, domain());
    const chargeId = await authorizeAtFake(agent.sub, sagaId);
    await ledger.recordAuthorization(agent.account, sagaId, chargeId, 'null');
    // Recovery voids locally and owes a void; a later pass delivers it.
    await settles(agent.account, async () => {
      const now = await state(agent.account);
      expect(now.sagas[0]!.state).toBe('voided');
      expect(now.owed).toEqual([]);
    });
    const s = await state(agent.account);
    expect(s.holds).toEqual([{ status: 'voided', amount: 1044 }]);
    expect(s.owed).toEqual([]);
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toContain(`/v1/charges/${chargeId}/void`);
  });

  it('during provisioning (the resource half made): taken down, both voided', async () => {
    const agent = await agentWithToken();
    const name = domain();
    const { ledger, sagaId, resourceId } = await begin(agent, name);
    const chargeId = await authorizeAtFake(agent.sub, sagaId);
    await ledger.recordAuthorization(agent.account, sagaId, chargeId, 'null');
    // What the domain backend does first: claim the name. Then the process dies.
    await claimName(name, agent.account, resourceId);
    await takenDownAndVoided(agent.account, name);
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toContain(`/v1/charges/${chargeId}/void`);
  });

  it('during provisioning, before the authorization was recorded (a creation records it with its completion): taken down, both voided, the charge found by its key', async () => {
    const agent = await agentWithToken();
    const name = domain();
    const { sagaId, resourceId } = await begin(agent, name);
    const chargeId = await authorizeAtFake(agent.sub, sagaId);
    await claimName(name, agent.account, resourceId);
    await takenDownAndVoided(agent.account, name);
    expect((await orchestratorCalls(agent.sub)).map((c) => `${c.method} ${c.path.split('?')[0]}`)).toEqual(['POST /v1/charges', 'GET /v1/charges', `POST /v1/charges/${chargeId}/void`]);
  });

  it('recovery that takes a creation while the orchestrator decides: the request takes down what it then made, answers 503, and the charge is voided by its id', async () => {
    const name = domain();
    const { agent, answer, release } = await heldCreation(name);
    await alarmNow(agent.account);
    expect((await state(agent.account)).sagas).toEqual([{ state: 'voided', charge_id: null }]);
    await release();
    expect((await answer).status).toBe(503);
    expect(await nameTaken(name)).toBe(false);
    const chargeId = (await state(agent.account)).sagas[0]!.charge_id;
    expect(chargeId).toMatch(/^chg_/);
    await settles(agent.account, async () => expect((await state(agent.account)).owed).toEqual([]));
    // Recovery may have looked the charge up by key while it was being decided (found nothing); the void goes by id.
    const posts = (await orchestratorCalls(agent.sub)).filter((c) => c.method === 'POST').map((c) => c.path);
    expect(posts).toEqual(['/v1/charges', `/v1/charges/${chargeId}/void`]);
    expect((await state(agent.account)).holds).toEqual([{ status: 'voided', amount: 1044 }]);
  });

  it('a creation whose saga nears its deadline while the orchestrator decides provisions nothing: 503, and the charge is voided by its id', async () => {
    const name = domain();
    const { agent, answer, release } = await heldCreation(name);
    // The answer comes 56 s after the saga began: recovery may claim it within the margin left.
    vi.useFakeTimers({ toFake: ['Date'], now: Date.now() + 56_000 });
    try {
      await release();
      expect((await answer).status).toBe(503);
    } finally {
      vi.useRealTimers();
    }
    expect(await nameTaken(name)).toBe(false);
    const s = await state(agent.account);
    expect(s.sagas).toEqual([{ state: 'voided', charge_id: expect.stringMatching(/^chg_/) }]);
    expect(s.resources.map((r) => r.status)).toEqual(['failed']);
    await settles(agent.account, async () => expect((await state(agent.account)).owed).toEqual([]));
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toEqual(['/v1/charges', `/v1/charges/${s.sagas[0]!.charge_id}/void`]);
  });

  it('recovery takes the saga out of the request’s hands before undoing it: a late completion is refused; a backend that fails holds up only its own saga', async () => {
    const agent = await agentWithToken();
    const name = domain();
    const stuck = await begin(agent, name);
    const chargeId = await authorizeAtFake(agent.sub, stuck.sagaId);
    await stuck.ledger.recordAuthorization(agent.account, stuck.sagaId, chargeId, 'null');
    await claimName(name, agent.account, stuck.resourceId);
    const other = await begin(agent, domain());
    // The registry cannot release the name: recovery's deprovision of the first saga fails.
    const trigger = `hold_${stuck.resourceId}`;
    await testEnv.DB.exec(`CREATE TRIGGER ${trigger} BEFORE DELETE ON service_names WHEN OLD.resource_id = '${stuck.resourceId}' BEGIN SELECT RAISE(ABORT, 'registry down'); END`);
    try {
      await alarmNow(agent.account);
      const sagaStates = await runInDurableObject(ledgerOf(agent.account), (_, s) =>
        Object.fromEntries(s.storage.sql.exec<{ id: string; state: string }>('SELECT id, state FROM sagas').toArray().map((r) => [r.id, r.state])),
      );
      expect(sagaStates).toEqual({ [stuck.sagaId]: 'recovering', [other.sagaId]: 'voided' });
      // The request finishing now is refused: the resource is not captured under recovery's feet.
      expect(await stuck.ledger.completeSaga(agent.account, stuck.sagaId, { fields: '{}', credentials: null, receipt: null, billing: 'one_time', renews_at: null })).toBeNull();
      expect((await state(agent.account)).holds.find((h) => h.status === 'captured')).toBeUndefined();
    } finally {
      await testEnv.DB.exec(`DROP TRIGGER ${trigger}`);
    }
    // The registry is back: the next pass takes the name down and voids both holds.
    await settles(agent.account, async () => {
      const now = await state(agent.account);
      expect(now.sagas.map((x) => x.state)).toEqual(['voided', 'voided']);
      expect(now.owed).toEqual([]);
    });
    expect(await nameTaken(name)).toBe(false);
    expect((await state(agent.account)).holds.map((h) => h.status)).toEqual(['voided', 'voided']);
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toContain(`/v1/charges/${chargeId}/void`);
  });

  it('an authorization that arrives after recovery voided the saga is voided at the orchestrator too', async () => {
    const agent = await agentWithToken();
    const { ledger, sagaId } = await begin(agent, domain());
    await settles(agent.account, async () => expect((await state(agent.account)).sagas).toEqual([{ state: 'voided', charge_id: null }]));
    const chargeId = await authorizeAtFake(agent.sub, sagaId);
    expect(await ledger.recordAuthorization(agent.account, sagaId, chargeId, 'null')).toMatchObject({ state: 'voided', charge_id: chargeId });
    await settles(agent.account, async () => expect((await state(agent.account)).owed).toEqual([]));
    expect((await orchestratorCalls(agent.sub)).map((c) => c.path)).toContain(`/v1/charges/${chargeId}/void`);
  });

  it('credentials waiting for an operation read: shown once, to its agent only; dropped (and said in the trail) when unclaimed for a day, or once the resource is deleted', async () => {
    const agent = await agentWithToken();
    const secret = `sk_${crypto.randomUUID()}`;
    const completed = async () => {
      const { ledger, sagaId, resourceId } = await begin(agent, domain());
      await ledger.recordAuthorization(agent.account, sagaId, await authorizeAtFake(agent.sub, sagaId), 'null');
      expect(await ledger.completeSaga(agent.account, sagaId, { fields: '{}', credentials: JSON.stringify({ token: secret }), receipt: null, billing: 'one_time', renews_at: null })).not.toBeNull();
      return { ledger, sagaId, resourceId };
    };
    const held = () => runInDurableObject(ledgerOf(agent.account), (_, s) => s.storage.sql.exec<{ id: string }>('SELECT id FROM sagas WHERE credentials IS NOT NULL').toArray().map((r) => r.id));

    const read = await completed();
    // Another agent of the account neither sees the operation nor uses up its one read.
    expect(await read.ledger.readOperation(agent.account, read.sagaId, 'agt_other')).toBeNull();
    expect((await read.ledger.readOperation(agent.account, read.sagaId, 'agt_crash'))?.credentials).toBe(JSON.stringify({ token: secret }));
    expect((await read.ledger.readOperation(agent.account, read.sagaId, 'agt_crash'))?.credentials).toBeNull();

    const unclaimed = await completed();
    const deleted = await completed();
    expect(await held()).toEqual(expect.arrayContaining([unclaimed.sagaId, deleted.sagaId]));
    expect((await deleted.ledger.beginDeprovision(agent.account, deleted.resourceId, { type: 'system', id: 'test' })).ok).toBe(true);
    expect(await held()).toEqual([unclaimed.sagaId]);

    // A day later, nobody came for them.
    await runAlarmPass(agent.account, (sql) => {
      sql.exec('UPDATE sagas SET updated = ? WHERE id = ?', Date.now() - 24 * 60 * 60 * 1000 - 1, unclaimed.sagaId);
      sql.exec(`INSERT INTO schedule (task, due_at) VALUES ('unclaimed_credentials', 0) ON CONFLICT (task) DO UPDATE SET due_at = 0`);
    });
    expect(await held()).toEqual([]);
    expect((await unclaimed.ledger.readOperation(agent.account, unclaimed.sagaId, 'agt_crash'))?.credentials).toBeNull();
    // The whole trail, in D1 once the outbox is copied: the expiry is said, the secret never.
    await ledgerOf(agent.account).flushAuditOutbox();
    const events = (await testEnv.DB.prepare('SELECT * FROM audit_events WHERE principal = ?1 ORDER BY seq').bind(agent.account).all<Record<string, unknown>>()).results;
    expect(events.filter((e) => e.action === 'resource.credentials_expire')).toEqual([expect.objectContaining({ target: unclaimed.resourceId, reason: 'unclaimed' })]);
    expect(JSON.stringify(events)).not.toContain(secret);
  });

  it('before the capture reached the orchestrator: retried until it does', async () => {
    const agent = await agentWithToken();
    await behave(agent.sub, { capture: 'error' });
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    expect(res.status).toBe(201);
    await alarmNow(agent.account);
    expect((await state(agent.account)).owed).toEqual([{ action: 'capture' }]);
    await behave(agent.sub, { capture: 'ok' });
    await settles(agent.account, async () => expect((await state(agent.account)).owed).toEqual([]));
    expect((await state(agent.account)).holds).toEqual([{ status: 'captured', amount: 1044 }]);
  });

  it('when the orchestrator voided the charge first (409 charge_voided on capture): deprovisioned and refunded', async () => {
    const agent = await agentWithToken();
    await behave(agent.sub, { capture: 'voided' });
    const name = domain();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name } });
    expect(res.status).toBe(201);
    expect(await nameTaken(name)).toBe(true);
    await settles(agent.account, async () => expect((await state(agent.account)).holds).toEqual([{ status: 'refunded', amount: 1044 }]));
    const s = await state(agent.account);
    expect(s.resources).toEqual([{ id: res.body.resource_id, status: 'deleted' }]);
    expect(await nameTaken(name)).toBe(false);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(0);
  });
});

describe('the provider’s own limit', () => {
  it('declines beyond the account’s monthly limit before asking the orchestrator', async () => {
    const agent = await agentWithToken();
    await ledgerOf(agent.account).setOwnLimit(agent.account, { amount: 2000, currency: 'usd' });
    expect((await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } })).status).toBe(201);
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    expect(res.status).toBe(402);
    expect(res.body).toMatchObject({ code: 'spend_limit_exceeded', limit: { amount: 2000 }, spent: { amount: 1044 }, requested: { amount: 1044 }, step_up_url: `${PROVIDER}/limits` });
    // The orchestrator was asked once, for the first domain only.
    expect((await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges')).toHaveLength(1);
  });

  it('declines the sixth domain of the day (the catalog’s velocity limit) before any charge', async () => {
    const agent = await agentWithToken();
    for (let i = 0; i < 5; i++) expect((await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } })).status).toBe(201);
    const sixth = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    expect(sixth).toMatchObject({ status: 402, body: { code: 'velocity_limited' } });
    expect((await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges')).toHaveLength(5);
  });
});

describe('recurring plans (§3.2)', () => {
  async function subscribed(behaviour: Record<string, string> = {}) {
    const key = await newAgentKey();
    const sub = `pw_${crypto.randomUUID()}`;
    const { token } = await obtainToken({
      agent: key,
      sub,
      claims: {
        authorization_details: [
          { type: 'oap_mandate', mandate_id: 'mdt_plan', services: ['workers-paid'], max_per_charge: null, spend_limit: { amount: 5000, currency: 'usd', period: 'month' }, expires_at: new Date(Date.now() + 90 * 86_400_000).toISOString() },
        ],
      },
    });
    const agent = { key, sub, token: token.access_token, account: token.account_id };
    await behave(sub, behaviour);
    const res = await paid(agent, { service: 'workers-paid', plan: 'paid' });
    expect(res.status).toBe(201);
    return { agent, resourceId: res.body.resource_id as string, chargeId: res.body.charge_id as string, receipt: res.body.receipt as string };
  }

  const resourceRow = (account: string, id: string) =>
    runInDurableObject(ledgerOf(account), (_, s) =>
      s.storage.sql.exec<{ status: string; renews_at: number | null; billing: string; suspended_at: number | null }>('SELECT status, renews_at, billing, suspended_at FROM resources WHERE id = ?', id).one(),
    );

  /** Every call owed to the orchestrator answered. */
  const chargeCallsSettled = (account: string) => vi.waitFor(async () => expect(await ledgerOf(account).pendingChargeCalls()).toEqual([]), { timeout: 5000 });

  /** The renewals task of the ledger's alarm due now. */
  const renewalsDue = (sql: SqlStorage) => sql.exec(`INSERT INTO schedule (task, due_at) VALUES ('renewals', 0) ON CONFLICT (task) DO UPDATE SET due_at = 0`);

  /** The resource as if a declined renewal had suspended it `ago` ms back. */
  const suspendedFor = (account: string, id: string, ago: number) =>
    runInDurableObject(ledgerOf(account), (_, s) => void s.storage.sql.exec('UPDATE resources SET suspended_at = ? WHERE id = ?', Date.now() - ago, id));

  /** The resource's renewal (or its next try) made due `dueFor` ms ago, and run. */
  async function renewNow(account: string, id: string, dueFor = 1000) {
    // Let the capture of the subscription settle first, so that what follows is about the renewal alone.
    await chargeCallsSettled(account);
    await runInDurableObject(ledgerOf(account), (_, s) => void s.storage.sql.exec('UPDATE resources SET renews_at = ? WHERE id = ?', Date.now() - dueFor, id));
    // Passes until the renewal has happened one way or the other (the object's own alarm may be mid-task).
    await vi.waitFor(
      async () => {
        await runAlarmPass(account, renewalsDue);
        // Every try moves the next one on (or, past a suspension's grace period, ends them).
        const row = await resourceRow(account, id);
        expect(row.renews_at === null || row.renews_at > Date.now()).toBe(true);
      },
      { timeout: 10_000, interval: 50 },
    );
  }

  it('renews a monthly plan at its boundary through the same charge path, each period’s receipt stating where it ends', async () => {
    const { agent, resourceId, chargeId, receipt } = await subscribed();
    const before = await resourceRow(agent.account, resourceId);
    expect(before.billing).toBe('month');
    expect(before.renews_at! - Date.now()).toBeGreaterThan(27 * 86_400_000);
    // The first period ends where the plan renews: the orchestrator takes no renewal of the charge before then.
    expect(decodeJwt(receipt)).toMatchObject({ charge_id: chargeId, period_end: new Date(before.renews_at!).toISOString() });
    await renewNow(agent.account, resourceId);
    const after = await resourceRow(agent.account, resourceId);
    expect(after.status).toBe('active');
    expect(after.renews_at! - Date.now()).toBeGreaterThan(27 * 86_400_000);
    const renewal = (await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges').map((c) => JSON.parse(c.body) as Json)[1]!;
    expect(renewal).toMatchObject({ service: 'workers-paid', plan: 'paid', amount: 500, renewal_of: chargeId });
    expect(renewal).not.toHaveProperty('agent_request');
    const s = await state(agent.account);
    expect(s.holds.map((h) => h.status)).toEqual(['captured', 'captured']);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(1000);
    // The renewal is captured at the orchestrator with its own receipt: the period from this boundary to the next.
    await chargeCallsSettled(agent.account);
    const renewalCapture = (await orchestratorCalls(agent.sub)).find((c) => c.path.endsWith('/capture') && !c.path.includes(chargeId))!;
    const renewalReceipt = (JSON.parse(renewalCapture.body) as { receipt: string }).receipt;
    expect(decodeJwt(renewalReceipt)).toMatchObject({
      charge_id: renewalCapture.path.split('/')[3],
      renewal_of: chargeId,
      amount: 500,
      currency: 'usd',
      period_end: new Date(after.renews_at!).toISOString(),
      // What the orchestrator checked when it authorized the renewal, as a creation's receipt says it.
      mandate_status_at_decision: 'active',
      constraint_results: [{ type: 'mandate_active', pass: true }],
    });
  });

  it('renews a domain yearly: charged again, and its expiry moves to the next boundary', async () => {
    const agent = await agentWithToken();
    const name = domain();
    const created = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name } });
    expect(created.status).toBe(201);
    const id = created.body.resource_id as string;
    expect((await resourceRow(agent.account, id)).billing).toBe('year');
    await renewNow(agent.account, id);
    const after = await resourceRow(agent.account, id);
    expect(after.status).toBe('active');
    const fields = await runInDurableObject(ledgerOf(agent.account), (_, s) => JSON.parse(s.storage.sql.exec<{ fields: string }>('SELECT fields FROM resources WHERE id = ?', id).one().fields) as Json);
    expect(fields).toMatchObject({ name, expires_at: new Date(after.renews_at!).toISOString() });
    expect(after.renews_at! - Date.now()).toBeGreaterThan(360 * 86_400_000);
    const charges = (await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges').map((c) => JSON.parse(c.body) as Json);
    expect(charges[1]).toMatchObject({ service: 'domain', plan: 'com-1y', amount: 1044, renewal_of: created.body.charge_id });
  });

  it('a renewal the orchestrator refunds (a dispute) is reversed here too', async () => {
    const { agent, resourceId } = await subscribed();
    await renewNow(agent.account, resourceId);
    const renewalCharge = (await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges').length;
    expect(renewalCharge).toBe(2);
    const chargeId = await runInDurableObject(ledgerOf(agent.account), (_, s) => s.storage.sql.exec<{ charge_id: string }>('SELECT charge_id FROM resources WHERE id = ?', resourceId).one().charge_id);
    const set = await signSecurityEvent({ [EVENT('charge.refunded')]: { charge_id: chargeId, verdict: 'outside_scope' } }, { claims: { sub: agent.sub } });
    expect((await postSecurityEvent(set.jwt)).status).toBe(202);
    const s = await state(agent.account);
    expect(s.holds.map((h) => h.status)).toEqual(['captured', 'refunded']);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(500);
  });

  it('refuses, and so never acknowledges, a refund it cannot apply: an unknown charge, or a subject not linked here', async () => {
    const { agent, resourceId } = await subscribed();
    const chargeId = await runInDurableObject(ledgerOf(agent.account), (_, s) => s.storage.sql.exec<{ charge_id: string }>('SELECT charge_id FROM resources WHERE id = ?', resourceId).one().charge_id);
    const unknown = await signSecurityEvent({ [EVENT('charge.refunded')]: { charge_id: 'chg_nothing_here', verdict: 'outside_scope' } }, { claims: { sub: agent.sub } });
    expect((await postSecurityEvent(unknown.jwt)).status).toBe(404);
    const stranger = await signSecurityEvent({ [EVENT('charge.refunded')]: { charge_id: chargeId, verdict: 'outside_scope' } }, { claims: { sub: 'pw_not_linked_here' } });
    expect((await postSecurityEvent(stranger.jwt)).status).toBe(404);
    expect((await state(agent.account)).holds.map((h) => h.status)).toEqual(['captured']);
    // A refused token was not taken as received: once it can be applied, the same token is.
    const delivered = await signSecurityEvent({ [EVENT('charge.refunded')]: { charge_id: chargeId, verdict: 'outside_scope' } }, { claims: { sub: agent.sub, jti: unknown.jti } });
    expect(await (await postSecurityEvent(delivered.jwt)).json()).toMatchObject({ duplicate: false, applied: ['charge.refunded'] });
    expect((await state(agent.account)).holds.map((h) => h.status)).toEqual(['refunded']);
  });

  it('counts renewals out of the service’s velocity limit (3 subscriptions a day), which is for what agents ask', async () => {
    const { agent, resourceId } = await subscribed();
    await renewNow(agent.account, resourceId);
    await renewNow(agent.account, resourceId);
    // One subscription and two renewals today: two more subscriptions still fit, a third does not.
    expect((await paid(agent, { service: 'workers-paid', plan: 'paid' })).status).toBe(201);
    expect((await paid(agent, { service: 'workers-paid', plan: 'paid' })).status).toBe(201);
    const fourth = await paid(agent, { service: 'workers-paid', plan: 'paid' });
    expect(fourth.status).toBe(402);
    expect(fourth.body.code).toBe('velocity_limited');
  });

  it('a renewal whose authorization answer is lost is tried again later, and the charge the orchestrator made is found by its key and voided', async () => {
    const { agent, resourceId } = await subscribed();
    await behave(agent.sub, { authorize: 'lost' });
    await renewNow(agent.account, resourceId);
    const row = await resourceRow(agent.account, resourceId);
    expect(row.status).toBe('active');
    expect(row.renews_at! - Date.now()).toBeLessThan(86_400_000); // postponed: tried again soon, not a period later
    expect((await state(agent.account)).owed).toEqual([{ action: 'void_by_key' }]);
    await settles(agent.account, async () => expect((await state(agent.account)).owed).toEqual([]));
    const calls = await orchestratorCalls(agent.sub);
    const renewal = calls.filter((c) => c.method === 'POST' && c.path === '/v1/charges').at(-1)!;
    const key = (JSON.parse(renewal.body) as { idempotency_key: string }).idempotency_key;
    expect(key).toMatch(/^renewal:/);
    const lookup = calls.findIndex((c) => c.method === 'GET' && c.path.includes(`idempotency_key=${encodeURIComponent(key)}`));
    expect(lookup).toBeGreaterThan(-1);
    expect(calls[lookup + 1]!.path).toMatch(/^\/v1\/charges\/chg_fake\d+\/void$/);
  });

  it('suspends the resource instead of overspending when the renewal is declined', async () => {
    const { agent, resourceId } = await subscribed();
    await behave(agent.sub, { authorize: 'decline' });
    await renewNow(agent.account, resourceId);
    expect((await resourceRow(agent.account, resourceId)).status).toBe('suspended');
    // Its agent reads why, and where the human lifts it: the orchestrator's decline, as it said.
    expect((await tokenRead(agent, `/v1/resources/${resourceId}`)).body).toMatchObject({
      status: 'suspended',
      suspension: { code: 'spend_limit_exceeded', by: 'orchestrator', step_up_url: 'http://127.0.0.1:8787/dashboard/limits', since: expect.any(String) },
    });
    const s = await state(agent.account);
    expect(s.holds.map((h) => h.status)).toEqual(['captured', 'voided']);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(500);
  });

  it('tries a suspended subscription again, less and less often, and resumes it for a whole period once a try is authorized', async () => {
    const { agent, resourceId, chargeId } = await subscribed();
    await behave(agent.sub, { authorize: 'decline' });
    await renewNow(agent.account, resourceId);
    const suspended = await resourceRow(agent.account, resourceId);
    expect(suspended).toMatchObject({ status: 'suspended', suspended_at: expect.any(Number) });
    expect(Math.abs(suspended.renews_at! - (Date.now() + 3_600_000))).toBeLessThan(60_000);
    // Suspended five hours ago and declined again: the next try waits as long again, and it stays suspended.
    await suspendedFor(agent.account, resourceId, 5 * 3_600_000);
    await renewNow(agent.account, resourceId);
    const again = await resourceRow(agent.account, resourceId);
    expect(again.status).toBe('suspended');
    expect(Math.abs(again.renews_at! - (Date.now() + 5 * 3_600_000))).toBeLessThan(60_000);
    // The human raised the limit: the next try (run ten days late) is authorized, and the resource is active for a
    // period from now, not from when the try was due.
    await behave(agent.sub, { authorize: 'ok' });
    await renewNow(agent.account, resourceId, 10 * 86_400_000);
    const resumed = await resourceRow(agent.account, resourceId);
    expect(resumed).toMatchObject({ status: 'active', suspended_at: null });
    expect(resumed.renews_at! - Date.now()).toBeGreaterThan(27 * 86_400_000);
    expect((await state(agent.account)).holds.map((h) => h.status)).toEqual(['captured', 'voided', 'voided', 'captured']);
    // Each try renewed the same charge, the one the subscription was bought with.
    const tries = (await orchestratorCalls(agent.sub)).filter((c) => c.method === 'POST' && c.path === '/v1/charges').slice(1);
    expect(tries.map((c) => (JSON.parse(c.body) as Json).renewal_of)).toEqual([chargeId, chargeId, chargeId]);
    await chargeCallsSettled(agent.account);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(1000);
  }, 20_000);

  it('stops trying once the suspension is older than its grace period, an orchestrator out of reach included: suspended, nothing renews it', async () => {
    const { agent, resourceId } = await subscribed();
    await behave(agent.sub, { authorize: 'decline' });
    await renewNow(agent.account, resourceId);
    // Half an hour of grace left, and the orchestrator cannot be reached: the try it would put off an hour is not made.
    await suspendedFor(agent.account, resourceId, 30 * 86_400_000 - 1_800_000);
    await behave(agent.sub, { authorize: 'busy' });
    await renewNow(agent.account, resourceId);
    expect(await resourceRow(agent.account, resourceId)).toMatchObject({ status: 'suspended', renews_at: null });
    // Nor when declined past it (the charge the lost try may have made found and voided first).
    await behave(agent.sub, { authorize: 'decline' });
    await settles(agent.account, async () => expect(await ledgerOf(agent.account).pendingChargeCalls()).toEqual([]));
    await suspendedFor(agent.account, resourceId, 30 * 86_400_000);
    await renewNow(agent.account, resourceId);
    expect(await resourceRow(agent.account, resourceId)).toMatchObject({ status: 'suspended', renews_at: null });
    const asked = (await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges').length;
    await runAlarmPass(agent.account, renewalsDue);
    expect((await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges')).toHaveLength(asked);
  }, 20_000);

  it('a renewal the orchestrator voided before its capture reached it is not paid: suspended, then tried again of the charge it renewed', async () => {
    const { agent, resourceId, chargeId } = await subscribed();
    // The subscription's own capture through first: the renewal's is the one the orchestrator refuses.
    await chargeCallsSettled(agent.account);
    await behave(agent.sub, { capture: 'voided' });
    await renewNow(agent.account, resourceId);
    await settles(agent.account, async () => expect((await resourceRow(agent.account, resourceId)).status).toBe('suspended'));
    const suspended = await resourceRow(agent.account, resourceId);
    expect(Math.abs(suspended.renews_at! - (Date.now() + 3_600_000))).toBeLessThan(60_000);
    expect((await state(agent.account)).holds.map((h) => h.status)).toEqual(['captured', 'refunded']);
    await behave(agent.sub, { capture: 'ok' });
    await renewNow(agent.account, resourceId);
    expect((await resourceRow(agent.account, resourceId)).status).toBe('active');
    const tries = (await orchestratorCalls(agent.sub)).filter((c) => c.method === 'POST' && c.path === '/v1/charges').slice(1);
    expect(tries.map((c) => (JSON.parse(c.body) as Json).renewal_of)).toEqual([chargeId, chargeId]);
  }, 20_000);

  it('does not try again a renewal no human can lift (the mandate revoked): suspended, nothing renews it', async () => {
    const { agent, resourceId } = await subscribed();
    await behave(agent.sub, { authorize: 'inactive' });
    await renewNow(agent.account, resourceId);
    expect(await resourceRow(agent.account, resourceId)).toMatchObject({ status: 'suspended', renews_at: null });
  });

  it('renews when the orchestrator says if it holds the period not over yet (409 renewal_not_due): active, nothing charged or owed', async () => {
    const { agent, resourceId } = await subscribed();
    await behave(agent.sub, { authorize: 'not_due' });
    await renewNow(agent.account, resourceId);
    const row = await resourceRow(agent.account, resourceId);
    expect(row.status).toBe('active');
    // The stand-in answers "due in 3 days".
    expect(Math.abs(row.renews_at! - (Date.now() + 3 * 86_400_000))).toBeLessThan(60_000);
    expect((await state(agent.account)).holds.map((h) => h.status)).toEqual(['captured', 'voided']);
    expect(await ledgerOf(agent.account).pendingChargeCalls()).toEqual([]);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(500);
  });

  it('waits, active, while the capture of the charge it would renew is still owed (the orchestrator would refuse it), then renews', async () => {
    const { agent, resourceId, chargeId } = await subscribed({ capture: 'error' });
    await runAlarmPass(agent.account, (sql) => {
      sql.exec('UPDATE resources SET renews_at = ? WHERE id = ?', Date.now() - 1000, resourceId);
      renewalsDue(sql);
    });
    const waiting = await resourceRow(agent.account, resourceId);
    expect(waiting.status).toBe('active');
    expect(waiting.renews_at! - Date.now()).toBeGreaterThan(30_000);
    expect(waiting.renews_at! - Date.now()).toBeLessThanOrEqual(60_000);
    expect((await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges')).toHaveLength(1);
    // Once the capture is through, the renewal goes ahead, naming that charge.
    await behave(agent.sub, { capture: 'ok' });
    await alarmNow(agent.account);
    await renewNow(agent.account, resourceId);
    const renewal = (await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges').map((c) => JSON.parse(c.body) as Json)[1]!;
    expect(renewal).toMatchObject({ renewal_of: chargeId });
  });

  it('suspends without asking when the account’s own limit cannot take the renewal, and resumes once it can', async () => {
    const { agent, resourceId } = await subscribed();
    await ledgerOf(agent.account).setOwnLimit(agent.account, { amount: 600, currency: 'usd' });
    await renewNow(agent.account, resourceId);
    expect((await resourceRow(agent.account, resourceId)).status).toBe('suspended');
    expect((await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges')).toHaveLength(1);
    // Nothing reached the orchestrator: its agent is the one to tell the human, and reads why and where to raise it.
    const suspended = (await tokenRead(agent, `/v1/resources/${resourceId}`)).body;
    expect(suspended.suspension).toEqual({ code: 'spend_limit_exceeded', by: 'provider', step_up_url: `${PROVIDER}/limits`, since: expect.any(String) });
    expect(Date.parse(suspended.suspension.since)).toBe((await resourceRow(agent.account, resourceId)).suspended_at);
    await ledgerOf(agent.account).setOwnLimit(agent.account, { amount: 2000, currency: 'usd' });
    await renewNow(agent.account, resourceId);
    expect((await resourceRow(agent.account, resourceId)).status).toBe('active');
    expect((await tokenRead(agent, `/v1/resources/${resourceId}`)).body).not.toHaveProperty('suspension');
    expect((await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges')).toHaveLength(2);
  });
});

describe('a retry after a crash between the saga and its Idempotency-Key record', () => {
  it('gets the first outcome back, never a second charge', async () => {
    const agent = await agentWithToken();
    const request = { service: 'domain', plan: 'com-1y', parameters: { name: domain() } };
    const first = await paid(agent, request, 'crash-key');
    expect(first.status).toBe(201);
    // The key's record is gone, as if the process died before writing it.
    await runInDurableObject(ledgerOf(agent.account), (_, s) => void s.storage.sql.exec('DELETE FROM idempotency'));
    const retry = await paid(agent, request, 'crash-key');
    expect(retry.status).toBe(201);
    expect(retry.body).toMatchObject({ resource_id: first.body.resource_id, charge_id: first.body.charge_id, audit_event_id: first.body.audit_event_id, receipt: first.body.receipt });
    expect((await orchestratorCalls(agent.sub)).filter((c) => c.path === '/v1/charges')).toHaveLength(1);
    expect((await state(agent.account)).holds).toEqual([{ status: 'captured', amount: 1044 }]);
  });

  it('is told to wait while that saga is still running', async () => {
    const agent = await agentWithToken();
    const request = { service: 'domain', plan: 'com-1y', parameters: { name: domain() } };
    await ledgerOf(agent.account).beginSaga(agent.account, {
      saga_id: `op_running${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`,
      resource_id: `res_running${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`,
      hold_id: `hld_running${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`,
      agent_id: 'agt_x',
      mandate_id: 'mdt_x',
      orchestrator: 'http://127.0.0.1:8787',
      principal_sub: agent.sub,
      token_jti: 'tok',
      service: 'domain',
      plan: 'com-1y',
      price: { amount: 1044, currency: 'usd' },
      parameters: '{}',
      request: '{}',
      async: false,
      velocity: null,
      request_key: `${agent.account}:agt_x running-key`,
    });
    const token = (await runInDurableObject(ledgerOf(agent.account), (_, s) => s.storage.sql.exec<{ agent_id: string }>('SELECT agent_id FROM account_agents LIMIT 1').one())).agent_id;
    await runInDurableObject(ledgerOf(agent.account), (_, s) => void s.storage.sql.exec(`UPDATE sagas SET request_key = ? WHERE agent_id = 'agt_x'`, `${agent.account}:${token} running-key`));
    const res = await paid(agent, request, 'running-key');
    expect(res).toMatchObject({ status: 409, body: { code: 'idempotency_request_in_progress' } });
  });
});

describe('the provider’s trail of a charge, for dispute evidence', () => {
  const orchestratorToken = (path: string, claims: Record<string, unknown> = {}) =>
    signCompact({ alg: 'EdDSA', typ: 'oap-orchestrator+jwt', kid: orchestratorKey.kid }, { iss: 'http://127.0.0.1:8787', aud: PROVIDER, iat: now(), exp: now() + 60, htm: 'GET', htu: `${PROVIDER}${path}`, ...claims });

  /** The charge's trail at `path`, asked as the orchestrator asks it, with a token for `path` (its claims changed by `claims`). */
  const askTrail = async (path: string, sub: string, claims?: Parameters<typeof orchestratorToken>[1]) =>
    call(`${path}?sub=${sub}`, { headers: { authorization: `Bearer ${await orchestratorToken(path, claims)}` } });

  it('answers the trusted orchestrator with the events of that charge, and nobody else', async () => {
    const agent = await agentWithToken();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    const path = `/v1/charges/${res.body.charge_id}/audit`;
    const ok = await call(`${path}?sub=${agent.sub}`, { headers: { authorization: `Bearer ${await orchestratorToken(path)}` } });
    expect(ok.status).toBe(200);
    const body = (await ok.json()) as { account_id: string; events: Json[] };
    expect(body.account_id).toBe(agent.account);
    expect(body.events.map((e) => e.action)).toEqual(expect.arrayContaining(['charge.reserve', 'resource.provision']));
    expect(body.events.find((e) => e.action === 'resource.provision')!.related).toContain(res.body.charge_id);

    expect((await call(`${path}?sub=${agent.sub}`)).status).toBe(401);
    expect((await call(`${path}?sub=${agent.sub}`, { headers: { authorization: `Bearer ${await orchestratorToken('/v1/charges/chg_other/audit')}` } })).status).toBe(401);
    expect((await call(`${path}?sub=${agent.sub}`, { headers: { authorization: `Bearer ${await orchestratorToken(path, { iss: 'https://elsewhere.example' })}` } })).status).toBe(401);
    expect((await call(`${path}?sub=pw_nobody`, { headers: { authorization: `Bearer ${await orchestratorToken(path)}` } })).status).toBe(404);
    // An account can be linked to several orchestrators: a charge made through another one is not this one's to read.
    await runInDurableObject(ledgerOf(agent.account), (_, s) => void s.storage.sql.exec('UPDATE sagas SET orchestrator = ? WHERE charge_id = ?', 'https://other-orchestrator.example', res.body.charge_id));
    expect((await call(`${path}?sub=${agent.sub}`, { headers: { authorization: `Bearer ${await orchestratorToken(path)}` } })).status).toBe(404);
  });

  it('answers an orchestrator that signs with ES256 (§2.2), a key of its JWKS', async () => {
    const es256 = await publishEs256OrchestratorKey();
    const agent = await agentWithToken();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    const path = `/v1/charges/${res.body.charge_id}/audit`;
    const token = await signCompact({ alg: 'ES256', typ: 'oap-orchestrator+jwt', kid: es256.kid }, { iss: 'http://127.0.0.1:8787', aud: PROVIDER, iat: now(), exp: now() + 60, htm: 'GET', htu: `${PROVIDER}${path}` }, es256.privateKey);
    expect((await call(`${path}?sub=${agent.sub}`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });

  it('proves each event alone with a head signed at it, by the provider’s published key, the same one on every read', async () => {
    const agent = await agentWithToken();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    const path = `/v1/charges/${res.body.charge_id}/audit`;
    const read = async () => (await (await askTrail(path, agent.sub)).json()) as { events: Json[]; heads: Json[] };
    const body = await read();
    expect(body.heads).toHaveLength(body.events.length);
    const jwks = createLocalJWKSet((await (await call('/.well-known/jwks.json')).json()) as JSONWebKeySet);
    for (const event of body.events) {
      const head = body.heads.find((h) => h.seq === event.seq)!;
      const { payload } = await jwtVerify(String(head.jws), jwks, { typ: 'oap-audit-head+jwt', issuer: PROVIDER });
      expect(payload).toMatchObject({ sub: agent.account, seq: event.seq, hash: event.hash });
    }
    // Read again, the heads are those signed the first time: a read signs at an event once.
    expect((await read()).heads).toEqual(body.heads);
    // A head is signed only at what the chain holds: another hash at that seq gets none.
    expect(await ledgerOf(agent.account).headsAt([{ seq: body.events[0]!.seq as number, hash: 'f'.repeat(64) }])).toEqual([]);
  });

  it('signs no head at a copy edited in D1, its hash recomputed: the copy no longer links to what the object vouches for', async () => {
    const agent = await agentWithToken();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    const ledger = ledgerOf(agent.account);
    await ledger.flushAuditOutbox();
    const path = `/v1/charges/${res.body.charge_id}/audit`;
    const read = async () => (await (await askTrail(path, agent.sub)).json()) as { events: AuditEvent[]; heads: Json[] };
    // Before any head was signed at these events, someone edits the reservation's copy in D1 and recomputes its hash.
    const reserve = (await read()).events.find((e) => e.action === 'charge.reserve')!;
    await runInDurableObject(ledger, (_, s) => void s.storage.sql.exec('DELETE FROM signed_heads'));
    const { hash: _old, ...edited } = { ...reserve, reason: 'edited' };
    const forged = auditEventHash(edited);
    await testEnv.DB.prepare('UPDATE audit_events SET reason = ?1, hash = ?2 WHERE principal = ?3 AND seq = ?4').bind('edited', forged, agent.account, reserve.seq).run();
    const body = await read();
    expect(body.events.find((e) => e.seq === reserve.seq)).toMatchObject({ reason: 'edited', hash: forged });
    expect(body.heads.map((h) => h.seq)).toEqual(body.events.filter((e) => e.seq !== reserve.seq).map((e) => e.seq));
    // The copy put back as it was gets its head again.
    await testEnv.DB.prepare('UPDATE audit_events SET reason = ?1, hash = ?2 WHERE principal = ?3 AND seq = ?4').bind(reserve.reason, reserve.hash, agent.account, reserve.seq).run();
    expect((await read()).heads.map((h) => h.seq)).toEqual(body.events.map((e) => e.seq));
  });

  // The same rules as the orchestrator's for a provider's token (shared verifier): 5 s of skew, and 60 s counted from now.
  const readTrail = async (times: { iat: number; exp: number }) => {
    const agent = await agentWithToken();
    const res = await paid(agent, { service: 'domain', plan: 'com-1y', parameters: { name: domain() } });
    const path = `/v1/charges/${res.body.charge_id}/audit`;
    return askTrail(path, agent.sub, times);
  };

  it('refuses an orchestrator token issued in the future beyond the clock skew', async () => {
    const t = now();
    const res = await readTrail({ iat: t + 86_400, exp: t + 86_460 });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: 'unauthorized' });
  });

  it('refuses an orchestrator token dated ahead to stay good more than 60 s from now, though exp − iat ≤ 60 s; takes one within the skew', async () => {
    const t = now();
    const ahead = await readTrail({ iat: t + 30, exp: t + 90 });
    expect(ahead.status).toBe(401);
    expect(await ahead.json()).toMatchObject({ code: 'unauthorized' });
    expect((await readTrail({ iat: t + 2, exp: t + 62 })).status).toBe(200);
    // The skew works both ways: a token that expired 2 s ago by our clock is still taken.
    expect((await readTrail({ iat: t - 60, exp: t - 2 })).status).toBe(200);
  });

  it('authenticates the orchestrator before it reads the request: 401, not 422, for a stranger sending bad parameters', async () => {
    for (const path of ['/v1/charges/chg_x/audit', '/v1/charges/not-a-charge/audit?sub=pw_x', '/v1/charges/not-a-charge/audit']) {
      const res = await call(path);
      expect(res.status, path).toBe(401);
      expect(((await res.json()) as Json).code).toBe('unauthorized');
      const forged = await call(path, { headers: { authorization: `Bearer ${await orchestratorToken(path.split('?')[0]!, { iss: 'https://elsewhere.example' })}` } });
      expect(forged.status, path).toBe(401);
    }
    // The trusted orchestrator, once authenticated, is told what is wrong with its parameters.
    const path = '/v1/charges/chg_x/audit';
    const missingSub = await call(path, { headers: { authorization: `Bearer ${await orchestratorToken(path)}` } });
    expect(missingSub.status).toBe(422);
  });
});
