// First-contact mandate requests from unregistered keys (PROTOCOL.md §2.1, §2.4):
// the same key asking twice, a key someone else registered meanwhile, and what
// an unknown key may read. A refused approval must leave the request decidable.
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { dpopProof, newAgentKey, type AgentKey } from '../support/agent-keys';
import { agentClient, call, mandateBody, newPrincipal, ORCHESTRATOR, type Agent, type Human } from '../support/orchestrator-client';

const testEnv = env as unknown as TestEnv;

type Pending = { mandate_id: string; user_code: string };

async function firstContact(stranger: Agent, name = 'cli on laptop'): Promise<Pending> {
  const res = await stranger.request('POST', '/v1/mandates', mandateBody({ agent: { name, public_jwk: stranger.key.jwk } }));
  expect(res.status).toBe(201);
  return (await res.json()) as Pending;
}

const decide = (human: Human, action: 'approve' | 'deny', mandateId: string, body: unknown) =>
  call(`/v1/mandates/${mandateId}/${action}`, { method: 'POST', headers: human.headers(), body: JSON.stringify(body) });

const requestRow = (mandateId: string) =>
  testEnv.DB.prepare('SELECT status, decided_by FROM first_contact_requests WHERE mandate_id = ?1').bind(mandateId).first<{ status: string; decided_by: string | null }>();

async function agentsOf(human: Human) {
  return ((await (await call('/v1/agents', { headers: { cookie: human.cookie } })).json()) as { data: { agent_id: string; status: string }[] }).data;
}

/** A principal registers a key it holds (§2.1), as `POST /v1/agents` requires. */
async function registerKey(human: Human, key: AgentKey): Promise<string> {
  const res = await call('/v1/agents', {
    method: 'POST',
    headers: human.headers({ dpop: await dpopProof(key, 'POST', `${ORCHESTRATOR}/v1/agents`) }),
    body: JSON.stringify({ name: 'registered by hand', public_jwk: key.jwk }),
  });
  expect(res.status).toBe(201);
  return ((await res.json()) as { agent_id: string }).agent_id;
}

describe('approving first-contact requests', () => {
  it('approves a second request from the same key as a mandate of the agent the first approval registered', async () => {
    const human = await newPrincipal();
    const stranger = agentClient(await newAgentKey());
    const [first, second] = [await firstContact(stranger), await firstContact(stranger)];

    const one = await decide(human, 'approve', first.mandate_id, { user_code: first.user_code });
    expect(one.status).toBe(200);
    const { agent_id } = (await one.json()) as { agent_id: string };
    const two = await decide(human, 'approve', second.mandate_id, { user_code: second.user_code });
    expect(two.status).toBe(200);
    expect(await two.json()).toMatchObject({ status: 'active', agent_id });

    expect(await agentsOf(human)).toEqual([expect.objectContaining({ agent_id })]);
    expect(await requestRow(second.mandate_id)).toEqual({ status: 'approved', decided_by: human.principal_id });
    expect(await (await stranger.request('GET', `/v1/mandates/${second.mandate_id}`)).json()).toMatchObject({ status: 'active', agent_id });
  });

  it('refuses a key another principal registered meanwhile with 409, leaving the request pending and deniable', async () => {
    const [asker, owner] = [await newPrincipal(), await newPrincipal()];
    const key = await newAgentKey();
    const pending = await firstContact(agentClient(key));
    await registerKey(owner, key);

    const refused = await decide(asker, 'approve', pending.mandate_id, { user_code: pending.user_code });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ code: 'invalid_request' });
    expect(await requestRow(pending.mandate_id)).toEqual({ status: 'pending', decided_by: null });
    expect(await agentsOf(asker)).toEqual([]);

    const denied = await decide(asker, 'deny', pending.mandate_id, { user_code: pending.user_code });
    expect(denied.status).toBe(200);
    expect(await denied.json()).toMatchObject({ status: 'denied' });
  });

  it('refuses a request whose key is now a revoked agent (a ledger refusal after the claim) and releases the claim', async () => {
    const human = await newPrincipal();
    const stranger = agentClient(await newAgentKey());
    const [first, second] = [await firstContact(stranger), await firstContact(stranger)];
    const { agent_id } = (await (await decide(human, 'approve', first.mandate_id, { user_code: first.user_code })).json()) as { agent_id: string };
    expect((await call(`/v1/agents/${agent_id}/revoke`, { method: 'POST', headers: human.headers() })).status).toBe(200);

    const refused = await decide(human, 'approve', second.mandate_id, { user_code: second.user_code });
    expect(refused.status).toBe(409);
    expect(await refused.json()).toMatchObject({ code: 'agent_revoked' });
    expect(await requestRow(second.mandate_id)).toEqual({ status: 'pending', decided_by: null });

    const denied = await decide(human, 'deny', second.mandate_id, { user_code: second.user_code });
    expect(denied.status).toBe(200);
    expect(await denied.json()).toMatchObject({ status: 'denied' });
  });
});

describe('decision bodies that are not JSON objects', () => {
  for (const action of ['approve', 'deny'] as const) {
    it(`answers ${action} with a null or array body 422 invalid_request and leaves the request pending`, async () => {
      const human = await newPrincipal();
      const pending = await firstContact(agentClient(await newAgentKey()));
      for (const body of ['null', '[]', '"text"']) {
        const res = await call(`/v1/mandates/${pending.mandate_id}/${action}`, { method: 'POST', headers: human.headers(), body });
        expect(res.status, body).toBe(422);
        expect(await res.json()).toMatchObject({ code: 'invalid_request' });
      }
      const unknown = await call(`/v1/mandates/mdt_unknown/${action}`, { method: 'POST', headers: human.headers(), body: 'null' });
      expect(unknown.status).toBe(422);
      expect(await requestRow(pending.mandate_id)).toEqual({ status: 'pending', decided_by: null });
      expect((await decide(human, action, pending.mandate_id, { user_code: pending.user_code })).status).toBe(200);
    });
  }
});

describe('what an unregistered key reads (§2.4)', () => {
  it('lists the first-contact requests it created, newest first, in the wire form of the single read', async () => {
    const stranger = agentClient(await newAgentKey());
    const other = agentClient(await newAgentKey());
    const [older, newer] = [await firstContact(stranger), await firstContact(stranger)];
    await firstContact(other);

    const listed = await stranger.request('GET', '/v1/mandates');
    expect(listed.status).toBe(200);
    const list = (await listed.json()) as { data: Record<string, unknown>[]; has_more: boolean };
    expect(list.data.map((m) => m.mandate_id)).toEqual([newer.mandate_id, older.mandate_id]);
    expect(list.has_more).toBe(false);

    const single = (await (await stranger.request('GET', `/v1/mandates/${newer.mandate_id}`)).json()) as Record<string, unknown>;
    expect(Object.keys(list.data[0]!).sort()).toEqual(Object.keys(single).sort());
    expect(list.data[0]).toMatchObject({ ...single, expires_in: expect.any(Number) });
    expect(list.data[0]).toMatchObject({ status: 'pending', agent_id: null, interval: 5 });
    expect(list.data[0]).not.toHaveProperty('user_code');
  });
});
