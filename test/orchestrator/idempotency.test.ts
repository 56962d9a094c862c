// PROTOCOL Conventions at the orchestrator: every mutating POST accepts an
// Idempotency-Key, scoped to the caller (a principal's session, an agent's key)
// and the path; a replay never hands out a credential again.
import { describe, expect, it } from 'vitest';
import { dpopProof, newAgentKey, type AgentKey } from '../support/agent-keys';
import { activeMandate, call, mandateBody, newPrincipal, ORCHESTRATOR, registerAgent, type Human } from '../support/orchestrator-client';

const asHuman = (human: Human, path: string, body: unknown, key: string) =>
  call(path, { method: 'POST', headers: human.headers({ 'idempotency-key': key }), body: JSON.stringify(body) });

const asKey = async (agent: AgentKey, path: string, body: unknown, key: string) =>
  call(path, {
    method: 'POST',
    headers: { dpop: await dpopProof(agent, 'POST', `${ORCHESTRATOR}${path}`), 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify(body),
  });

async function expectProblem(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(((await res.json()) as { code: string }).code).toBe(code);
}

describe('Idempotency-Key at the orchestrator', () => {
  it('replays a mandate request by the same agent, refuses the key with another body, and keeps keys apart per agent', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const key = crypto.randomUUID();
    const body = mandateBody();
    const first = await asKey(agent.key, '/v1/mandates', body, key);
    expect(first.status).toBe(201);
    const created = (await first.json()) as { mandate_id: string };
    const again = await asKey(agent.key, '/v1/mandates', body, key);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(((await again.json()) as { mandate_id: string }).mandate_id).toBe(created.mandate_id);
    await expectProblem(await asKey(agent.key, '/v1/mandates', mandateBody({ description: 'Something else' }), key), 422, 'idempotency_key_reused');
    // One mandate was made, not two.
    const listed = (await (await agent.request('GET', '/v1/mandates')).json()) as { data: unknown[] };
    expect(listed.data).toHaveLength(1);
    // The same key from another agent of the same principal is that agent's own.
    const other = await registerAgent(human);
    const theirs = await asKey(other.key, '/v1/mandates', body, key);
    expect(theirs.status).toBe(201);
    expect(theirs.headers.get('idempotent-replayed')).toBeNull();
    expect(((await theirs.json()) as { mandate_id: string }).mandate_id).not.toBe(created.mandate_id);
  });

  it('replays a first-contact request from an unregistered key', async () => {
    const stranger = await newAgentKey();
    const key = crypto.randomUUID();
    const body = { ...mandateBody(), agent: { name: 'new agent', public_jwk: stranger.jwk } };
    const first = await asKey(stranger, '/v1/mandates', body, key);
    expect(first.status).toBe(201);
    const again = await asKey(stranger, '/v1/mandates', body, key);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(((await again.json()) as { mandate_id: string }).mandate_id).toBe(((await first.json()) as { mandate_id: string }).mandate_id);
  });

  it('replays a webhook endpoint’s creation without its secret, and a limit change, for the principal that made them', async () => {
    const human = await newPrincipal();
    const key = crypto.randomUUID();
    const first = await asHuman(human, '/v1/webhook_endpoints', { url: 'https://hooks.example.com/oap' }, key);
    expect(first.status).toBe(201);
    const endpoint = (await first.json()) as { id: string; secret: string };
    expect(endpoint.secret).toMatch(/^whsec_/);
    const again = await asHuman(human, '/v1/webhook_endpoints', { url: 'https://hooks.example.com/oap' }, key);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual({ id: endpoint.id, url: 'https://hooks.example.com/oap', secret: null, secret_redacted: true });

    const limitKey = crypto.randomUUID();
    const set = await asHuman(human, '/v1/limits', { amount: 20_000, currency: 'usd' }, limitKey);
    expect(set.status).toBe(200);
    const replayed = await asHuman(human, '/v1/limits', { amount: 20_000, currency: 'usd' }, limitKey);
    expect(replayed.headers.get('idempotent-replayed')).toBe('true');
    await expectProblem(await asHuman(human, '/v1/limits', { amount: 30_000, currency: 'usd' }, limitKey), 422, 'idempotency_key_reused');
    const limits = (await (await call('/v1/limits', { headers: human.headers() })).json()) as { data: { scope: string; limit: { amount: number } }[] };
    expect(limits.data.find((row) => row.scope === 'principal')!.limit.amount).toBe(20_000);
  });

  it('replays an attestation without the credential in it', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    const key = crypto.randomUUID();
    const first = await asKey(agent.key, '/v1/attestations', { mandate_id, provider: 'cloud' }, key);
    expect(first.status).toBe(200);
    expect(((await first.json()) as { attestation: string }).attestation).toMatch(/^ey/);
    const again = await asKey(agent.key, '/v1/attestations', { mandate_id, provider: 'cloud' }, key);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toMatchObject({ attestation: null, attestation_redacted: true });
  });

  it('replays an agent’s revocation, and never a read: a key on a GET is ignored', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const key = crypto.randomUUID();
    const list = (query: string) => call(`/v1/agents${query}`, { headers: human.headers({ 'idempotency-key': key }) });
    expect(((await (await list('?limit=1')).json()) as { data: unknown[] }).data).toHaveLength(1);
    await registerAgent(human);
    const second = await list('?limit=10');
    expect(second.headers.get('idempotent-replayed')).toBeNull();
    expect(((await second.json()) as { data: unknown[] }).data).toHaveLength(2);

    const revokeKey = crypto.randomUUID();
    const revoke = () => call(`/v1/agents/${agent.agent_id}/revoke`, { method: 'POST', headers: human.headers({ 'idempotency-key': revokeKey }) });
    const first = await revoke();
    expect(first.status).toBe(200);
    const again = await revoke();
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual(await first.json());
  });

  it('refuses a malformed key with 400 and changes nothing', async () => {
    const human = await newPrincipal();
    await expectProblem(await asHuman(human, '/v1/limits', { amount: 20_000, currency: 'usd' }, 'k'.repeat(256)), 400, 'invalid_request');
    await expectProblem(await asHuman(human, '/v1/limits', { amount: 20_000, currency: 'usd' }, 'with space'), 400, 'invalid_request');
    const limits = (await (await call('/v1/limits', { headers: human.headers() })).json()) as { data: { scope: string; limit: { amount: number } }[] };
    expect(limits.data.find((row) => row.scope === 'principal')!.limit.amount).toBe(10_000);
  });
});
