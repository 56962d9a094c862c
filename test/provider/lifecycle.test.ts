// A resource after its saga (PROTOCOL.md §3.1 "Also"): DELETE deprovisions at
// once and stops recurring billing, every step audited; the agent acts only on
// its own resources; a backend that fails to deprovision is retried by the
// ledger's alarm until it confirms.
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { useFakeOrchestrator } from '../support/fake-orchestrator';
import { accountTrail, agentWithToken, paidCall, tokenRead, type TokenAgent } from '../support/paid-calls';

useFakeOrchestrator();

const testEnv = env as unknown as TestEnv;
const ledgerOf = (account: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(account));
const domain = () => `life-${crypto.randomUUID().slice(0, 8)}.com`;
const nameHeld = async (name: string) => (await testEnv.DB.prepare(`SELECT 1 AS x FROM service_names WHERE kind = 'domain' AND name = ?1`).bind(name).first()) !== null;

async function registered(agent: TokenAgent, name = domain()) {
  const res = await paidCall(agent, 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name } });
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { id: res.body.resource_id as string, name };
}

const trail = accountTrail;

describe('DELETE /v1/resources/{id}', () => {
  it('deprovisions at once: the name is released, reads say deleted, the trail has it', async () => {
    const agent = await agentWithToken();
    const { id, name } = await registered(agent);
    expect(await nameHeld(name)).toBe(true);

    const deleted = await paidCall(agent, 'DELETE', `/v1/resources/${id}`);
    expect(deleted.status, JSON.stringify(deleted.body)).toBe(200);
    expect(deleted.body).toMatchObject({ resource_id: id, status: 'deleted', name });
    expect(await nameHeld(name)).toBe(false);
    expect((await tokenRead(agent, `/v1/resources/${id}`)).body.status).toBe('deleted');
    const owed = await runInDurableObject(ledgerOf(agent.account), (_, s) => s.storage.sql.exec('SELECT * FROM deprovision_outbox').toArray());
    expect(owed).toEqual([]);
    const events = (await trail(agent.account)).filter((e) => e.target === id && e.action === 'resource.deprovision');
    expect(events).toMatchObject([{ outcome: 'succeeded', actor: { type: 'agent', id: agent.agentId } }]);
    // Conventions: the response names the event that recorded it.
    expect(deleted.body.audit_event_id).toBe(events[0]!.id);
  });

  it('is idempotent: a replay answers the same, a second delete changes nothing and writes no second event', async () => {
    const agent = await agentWithToken();
    const { id } = await registered(agent);
    const key = crypto.randomUUID();
    const first = await paidCall(agent, 'DELETE', `/v1/resources/${id}`, undefined, key);
    const replay = await paidCall(agent, 'DELETE', `/v1/resources/${id}`, undefined, key);
    const again = await paidCall(agent, 'DELETE', `/v1/resources/${id}`);
    expect([first.status, replay.status, again.status]).toEqual([200, 200, 200]);
    expect(replay.body).toEqual(first.body);
    expect(again.body.status).toBe('deleted');
    // The second delete changed nothing, so no event is named.
    expect(again.body.audit_event_id).toBeNull();
    expect((await trail(agent.account)).filter((e) => e.target === id && e.action === 'resource.deprovision')).toHaveLength(1);
  });

  it('needs the agent signature and an Idempotency-Key, like every paid call', async () => {
    const agent = await agentWithToken();
    const { id, name } = await registered(agent);
    const { call } = await import('../support/fake-orchestrator');
    const { dpopProof } = await import('../support/agent-keys');
    const url = `http://127.0.0.1:8788/v1/resources/${id}`;
    const unsigned = await call(`/v1/resources/${id}`, {
      method: 'DELETE',
      headers: { authorization: `DPoP ${agent.token}`, dpop: await dpopProof(agent.key, 'DELETE', url, { accessToken: agent.token }), 'idempotency-key': crypto.randomUUID() },
    });
    expect(unsigned.status).toBe(401);
    expect(((await unsigned.json()) as { code: string }).code).toBe('invalid_signature');
    expect(await nameHeld(name)).toBe(true);
  });

  it('another agent’s resource, or one that never existed, is not found and stays', async () => {
    const owner = await agentWithToken();
    const { id, name } = await registered(owner);
    const stranger = await agentWithToken();
    expect((await paidCall(stranger, 'DELETE', `/v1/resources/${id}`)).status).toBe(404);
    expect((await paidCall(owner, 'DELETE', '/v1/resources/res_doesnotexist')).status).toBe(404);
    expect(await nameHeld(name)).toBe(true);
  });

  it('needs a token that covers the resource’s service: 403 insufficient_scope, and the resource stays', async () => {
    const agent = await agentWithToken();
    const { id, name } = await registered(agent);
    const { obtainToken } = await import('../support/fake-orchestrator');
    const narrow = await obtainToken({
      agent: agent.key,
      sub: agent.sub,
      agentId: agent.agentId,
      claims: {
        authorization_details: [
          { type: 'oap_mandate', mandate_id: agent.mandateId, services: ['worker-script'], max_per_charge: null, spend_limit: { amount: 5000, currency: 'usd', period: 'month' }, expires_at: new Date(Date.now() + 86_400_000).toISOString() },
        ],
      },
    });
    const refused = await paidCall({ key: agent.key, token: narrow.token.access_token }, 'DELETE', `/v1/resources/${id}`);
    expect(refused.status).toBe(403);
    expect(refused.body.code).toBe('insufficient_scope');
    expect(await nameHeld(name)).toBe(true);
    // Nothing changed, and the refusal is in the account's trail (§4), the agent its actor.
    expect((await trail(agent.account)).filter((e) => e.target === id && e.action === 'resource.deprovision').map((e) => [e.outcome, e.reason, e.actor.id])).toEqual([['refused', 'insufficient_scope', agent.agentId]]);
  });

  it('stops the renewal of a recurring plan', async () => {
    const agent = await agentWithToken({
      claims: {
        authorization_details: [
          { type: 'oap_mandate', mandate_id: 'mdt_sub', services: ['workers-paid'], max_per_charge: null, spend_limit: { amount: 5000, currency: 'usd', period: 'month' }, expires_at: new Date(Date.now() + 86_400_000).toISOString() },
        ],
      },
    });
    const created = await paidCall(agent, 'POST', '/v1/resources', { service: 'workers-paid', plan: 'paid', parameters: {} });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    expect(created.body.renews_at).toEqual(expect.any(String));
    const deleted = await paidCall(agent, 'DELETE', `/v1/resources/${created.body.resource_id}`);
    expect(deleted.body).toMatchObject({ status: 'deleted' });
    expect(deleted.body.renews_at).toBeUndefined();
    const row = await runInDurableObject(ledgerOf(agent.account), (_, s) => s.storage.sql.exec<{ renews_at: number | null }>('SELECT renews_at FROM resources WHERE id = ?', created.body.resource_id).one());
    expect(row.renews_at).toBeNull();
  });

  it('a backend that fails to deprovision is retried by the alarm until it confirms', async () => {
    const agent = await agentWithToken();
    const { id, name } = await registered(agent);
    const trigger = `keep_${id}`;
    await testEnv.DB.exec(`CREATE TRIGGER ${trigger} BEFORE DELETE ON service_names WHEN OLD.resource_id = '${id}' BEGIN SELECT RAISE(ABORT, 'registry down'); END`);
    const deleted = await paidCall(agent, 'DELETE', `/v1/resources/${id}`);
    expect(deleted.body.status).toBe('deleted');
    expect(await nameHeld(name)).toBe(true);

    await testEnv.DB.exec(`DROP TRIGGER ${trigger}`);
    const ledger = ledgerOf(agent.account);
    for (let attempt = 0; attempt < 50 && (await nameHeld(name)); attempt++) {
      await runInDurableObject(ledger, async (_, s) => {
        s.storage.sql.exec('UPDATE deprovision_outbox SET next_attempt_at = 0');
        s.storage.sql.exec(`INSERT INTO schedule (task, due_at) VALUES ('deprovisions', 0) ON CONFLICT (task) DO UPDATE SET due_at = 0`);
        await s.storage.setAlarm(Date.now());
      });
      await runDurableObjectAlarm(ledger);
    }
    expect(await nameHeld(name)).toBe(false);
    const events = (await trail(agent.account)).filter((e) => e.target === id && e.action === 'resource.deprovision');
    // Deleted (the request), the backend's failure (the request's own attempt), its confirmation (the alarm).
    expect(events.map((e) => e.outcome)).toEqual(['succeeded', 'failed', 'succeeded']);
  });
});

describe('POST /v1/resources/{id}/rotate', () => {
  it('is refused for a service that issues no credentials, and changes nothing', async () => {
    const agent = await agentWithToken();
    const { id } = await registered(agent);
    const res = await paidCall(agent, 'POST', `/v1/resources/${id}/rotate`);
    expect(res.status).toBe(422);
    expect(res.body.code).toBe('invalid_request');
    expect((await trail(agent.account)).filter((e) => e.action === 'resource.rotate').map((e) => [e.outcome, e.reason, e.target])).toEqual([['refused', 'invalid_request', id]]);
  });

  it('a rotation that finishes after the resource was suspended stands; after it was deleted, it is undone', async () => {
    const agent = await agentWithToken();
    const ledger = ledgerOf(agent.account);
    const actor = { type: 'agent' as const, id: agent.agentId };
    const { id: suspendedId } = await registered(agent);
    // A declined renewal suspended it while the backend was rotating: the data and the new credentials stay.
    await runInDurableObject(ledger, (_, s) => void s.storage.sql.exec(`UPDATE resources SET status = 'suspended' WHERE id = ?`, suspendedId));
    expect(await ledger.recordRotation(agent.account, suspendedId, JSON.stringify({ rotated: true }), actor)).toMatchObject({ resource: { status: 'suspended', fields: JSON.stringify({ rotated: true }) }, event_id: expect.stringMatching(/^evt_/) });
    const { id: deletedId } = await registered(agent);
    expect((await paidCall(agent, 'DELETE', `/v1/resources/${deletedId}`)).body.status).toBe('deleted');
    expect(await ledger.recordRotation(agent.account, deletedId, JSON.stringify({ rotated: true }), actor)).toBeNull();
  });
});
