// Agents and mandates at the orchestrator (PROTOCOL.md §2.1, §2.4).
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { createLocalJWKSet, jwtVerify } from 'jose';
import { describe, expect, it } from 'vitest';
import { newAgentKey, dpopProof } from '../support/agent-keys';
import { activeMandate, agentClient, call, mandateBody, newPrincipal, ORCHESTRATOR, registerAgent } from '../support/orchestrator-client';

const testEnv = env as unknown as TestEnv;
const DB = testEnv.DB;
const jwks = async () => createLocalJWKSet((await (await call('/.well-known/jwks.json')).json()) as never);

describe('agent registration', () => {
  it('registers a key proved by a DPoP proof of that key, identified by its thumbprint', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human, 'deploy bot');
    const list = (await (await call('/v1/agents', { headers: { cookie: human.cookie } })).json()) as { data: { agent_id: string; key_thumbprint: string; status: string }[] };
    expect(list.data).toEqual([expect.objectContaining({ agent_id: agent.agent_id, key_thumbprint: agent.key.jkt, status: 'active', registered_via: 'principal' })]);
  });

  it('refuses a registration whose proof is signed by another key (nobody registers a key they do not hold)', async () => {
    const human = await newPrincipal();
    const [claimed, holder] = [await newAgentKey(), await newAgentKey()];
    const res = await call('/v1/agents', {
      method: 'POST',
      headers: human.headers({ dpop: await dpopProof(holder, 'POST', `${ORCHESTRATOR}/v1/agents`) }),
      body: JSON.stringify({ name: 'stolen key', public_jwk: claimed.jwk }),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: 'invalid_signature' });
    expect(((await (await call('/v1/agents', { headers: { cookie: human.cookie } })).json()) as { data: unknown[] }).data).toEqual([]);
  });

  it('gives one key to one agent: the same key again is 409', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const again = await call('/v1/agents', {
      method: 'POST',
      headers: human.headers({ dpop: await dpopProof(agent.key, 'POST', `${ORCHESTRATOR}/v1/agents`) }),
      body: JSON.stringify({ name: 'twin', public_jwk: agent.key.jwk }),
    });
    expect(again.status).toBe(409);
  });

  it('refuses a public_jwk with a private part', async () => {
    const human = await newPrincipal();
    const key = await newAgentKey();
    const res = await call('/v1/agents', {
      method: 'POST',
      headers: human.headers({ dpop: await dpopProof(key, 'POST', `${ORCHESTRATOR}/v1/agents`) }),
      body: JSON.stringify({ name: 'leaky', public_jwk: { ...key.jwk, d: 'AAAA' } }),
    });
    expect(res.status).toBe(422);
  });

  it('takes a key with the metadata key libraries export (kid, alg, use, key_ops) and keeps only the key; metadata of another kind of key is 422', async () => {
    const human = await newPrincipal();
    const register = async (key: Awaited<ReturnType<typeof newAgentKey>>, public_jwk: Record<string, unknown>) =>
      call('/v1/agents', { method: 'POST', headers: human.headers({ dpop: await dpopProof(key, 'POST', `${ORCHESTRATOR}/v1/agents`) }), body: JSON.stringify({ name: 'exported', public_jwk }) });
    const key = await newAgentKey();
    const res = await register(key, { ...key.jwk, kid: 'laptop-1', alg: 'EdDSA', use: 'sig', key_ops: ['verify'] });
    expect(res.status).toBe(201);
    const agent = (await res.json()) as { public_jwk: Record<string, unknown>; key_thumbprint: string };
    expect(agent.public_jwk).toEqual({ kty: 'OKP', crv: 'Ed25519', x: key.jwk.x });
    expect(agent.key_thumbprint).toBe(key.jkt);
    const other = await newAgentKey();
    for (const odd of [{ alg: 'ES256' }, { use: 'enc' }, { key_ops: ['sign'] }]) expect((await register(other, { ...other.jwk, ...odd })).status).toBe(422);
  });

  it('never lets an agent credential register agents', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const other = await newAgentKey();
    const res = await agent.request('POST', '/v1/agents', { name: 'spawned', public_jwk: other.jwk });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: 'unauthorized' });
  });
});

describe('agent proofs (§2.4)', () => {
  it('refuses a replayed proof, a stale iat, a wrong htm and a wrong htu', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const url = `${ORCHESTRATOR}/v1/mandates`;
    const proof = await dpopProof(agent.key, 'GET', url);
    expect((await call('/v1/mandates', { headers: { dpop: proof } })).status).toBe(200);
    const replay = await call('/v1/mandates', { headers: { dpop: proof } });
    expect(replay.status).toBe(401);
    expect(await replay.json()).toMatchObject({ code: 'replayed' });
    for (const options of [{ iat: Math.floor(Date.now() / 1000) - 120 }, { htm: 'POST' }, { htu: `${ORCHESTRATOR}/v1/agents` }, { typ: 'JWT' }]) {
      const res = await call('/v1/mandates', { headers: { dpop: await dpopProof(agent.key, 'GET', url, options) } });
      expect(res.status, JSON.stringify(options)).toBe(401);
      expect(await res.json()).toMatchObject({ code: 'invalid_signature' });
    }
  });

  it('accepts the fully specified Ed25519 alg name as well as EdDSA', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const res = await call('/v1/mandates', { headers: { dpop: await dpopProof(agent.key, 'GET', `${ORCHESTRATOR}/v1/mandates`, { alg: 'Ed25519' }) } });
    expect(res.status).toBe(200);
  });
});

describe('mandates', () => {
  it('goes pending → active on the human’s approval, with a mandate_jws the orchestrator signed', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const created = await agent.request('POST', '/v1/mandates', mandateBody({ share_email: true }));
    expect(created.status).toBe(201);
    const pending = (await created.json()) as Record<string, unknown>;
    expect(pending).toMatchObject({ status: 'pending', agent_id: agent.agent_id, interval: 5 });
    expect(pending.approval_url).toBe(`${ORCHESTRATOR}/mandates/${pending.mandate_id}/approval`);
    expect(pending.user_code).toMatch(/^[B-Z]{4}-[B-Z]{4}$/);
    expect(pending.expires_in).toBeGreaterThan(500);

    const display = (await (await call(`/v1/mandates/${pending.mandate_id}/display`, { headers: { cookie: human.cookie } })).json()) as {
      display: Record<string, unknown>;
      display_hash: string;
    };
    expect(display.display).toMatchObject({ agent: { agent_id: agent.agent_id, name_verified: true }, share_email: true, email_shared: human.email });
    const approved = await call(`/v1/mandates/${pending.mandate_id}/approve`, {
      method: 'POST',
      headers: human.headers(),
      body: JSON.stringify({ display_hash: display.display_hash, spend_limit: { amount: 3000, currency: 'usd', period: 'month' } }),
    });
    expect(approved.status).toBe(200);
    const mandate = (await approved.json()) as Record<string, string>;
    expect(mandate).toMatchObject({ status: 'active', display_hash: display.display_hash, spend_limit: { amount: 3000, currency: 'usd', period: 'month' } });
    expect(mandate.approver_email_hint).toBe(`${human.email[0]}…@example.test`);

    const { payload, protectedHeader } = await jwtVerify(mandate.mandate_jws!, await jwks(), { issuer: ORCHESTRATOR });
    expect(protectedHeader.typ).toBe('oap-mandate+jwt');
    expect(payload).toMatchObject({ sub: human.principal_id, agent_id: agent.agent_id, cnf: { jkt: agent.key.jkt }, display_hash: display.display_hash });
    expect(payload.constraints).toContainEqual({ type: 'spend_limit', limit: { amount: 3000, currency: 'usd', period: 'month' } });

    // The agent sees the decision (a decided mandate is never slowed down).
    const polled = (await (await agent.request('GET', `/v1/mandates/${pending.mandate_id}`)).json()) as Record<string, unknown>;
    expect(polled).toMatchObject({ status: 'active', mandate_jws: mandate.mandate_jws });
  });

  it('answers a poll faster than interval with 429 slow_down, but never the first poll', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const { mandate_id } = (await (await agent.request('POST', '/v1/mandates', mandateBody())).json()) as { mandate_id: string };
    expect((await agent.request('GET', `/v1/mandates/${mandate_id}`)).status).toBe(200);
    const fast = await agent.request('GET', `/v1/mandates/${mandate_id}`);
    expect(fast.status).toBe(429);
    expect(await fast.json()).toMatchObject({ code: 'slow_down', interval: 5 });
  });

  it('lets the human lower limits but never raise them', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const { mandate_id } = (await (await agent.request('POST', '/v1/mandates', mandateBody())).json()) as { mandate_id: string };
    const raised = await call(`/v1/mandates/${mandate_id}/approve`, {
      method: 'POST',
      headers: human.headers(),
      body: JSON.stringify({ max_per_charge: { cloud: { amount: 99999, currency: 'usd' } } }),
    });
    expect(raised.status).toBe(422);
    const lowered = await call(`/v1/mandates/${mandate_id}/approve`, {
      method: 'POST',
      headers: human.headers(),
      body: JSON.stringify({ max_per_charge: { cloud: { amount: 500, currency: 'usd' } } }),
    });
    expect(((await lowered.json()) as { scope: { max_per_charge: unknown }[] }).scope[0]!.max_per_charge).toEqual({ amount: 500, currency: 'usd' });
  });

  it('needs a recent sign-in to approve a successor that lets the agent spend more than its predecessor, however it widens', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const { mandate_id } = await activeMandate(human, agent);
    const stale = async (auth: 'stale' | 'fresh') =>
      testEnv.DB.prepare(`UPDATE sessions SET auth_time = ${auth === 'stale' ? 'auth_time - 600' : "CAST(strftime('%s','now') AS INTEGER)"} WHERE subject_id = ?1`).bind(human.principal_id).run();
    const base = mandateBody({ supersedes: mandate_id });
    const scope = base.scope[0]!;
    for (const [what, terms] of [
      ['another service', { ...base, scope: [{ ...scope, services: [...scope.services, 'workers-paid'] }] }],
      ['another provider', { ...base, scope: [scope, { provider: 'data', services: ['database'] }] }],
      ['no per-charge limit', { ...base, scope: [{ provider: scope.provider, services: scope.services }] }],
      ['a higher per-charge limit', { ...base, scope: [{ ...scope, max_per_charge: { amount: 3000, currency: 'usd' } }] }],
    ] as const) {
      const { mandate_id: successor } = (await (await agent.request('POST', '/v1/mandates', terms)).json()) as { mandate_id: string };
      await stale('stale');
      const refused = await call(`/v1/mandates/${successor}/approve`, { method: 'POST', headers: human.headers(), body: '{}' });
      expect(refused.status, what).toBe(401);
      expect(await refused.json()).toMatchObject({ code: 'reauthentication_required' });
      await call(`/v1/mandates/${successor}/deny`, { method: 'POST', headers: human.headers() });
      await stale('fresh');
    }
    // The same terms again (a later end alone) widen nothing.
    const { mandate_id: same } = (await (await agent.request('POST', '/v1/mandates', base)).json()) as { mandate_id: string };
    await stale('stale');
    expect((await call(`/v1/mandates/${same}/approve`, { method: 'POST', headers: human.headers(), body: '{}' })).status).toBe(200);
  });

  it('refuses approval without the CSRF token, leaving the mandate pending', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const { mandate_id } = (await (await agent.request('POST', '/v1/mandates', mandateBody())).json()) as { mandate_id: string };
    const res = await call(`/v1/mandates/${mandate_id}/approve`, { method: 'POST', headers: { cookie: human.cookie, 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'csrf_failed' });
    expect(((await (await call(`/v1/mandates/${mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { status: string }).status).toBe('pending');
  });

  it('never lets an agent approve its own mandate', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const { mandate_id } = (await (await agent.request('POST', '/v1/mandates', mandateBody())).json()) as { mandate_id: string };
    const res = await agent.request('POST', `/v1/mandates/${mandate_id}/approve`, {});
    expect(res.status).toBe(401);
    expect(((await (await call(`/v1/mandates/${mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { status: string }).status).toBe('pending');
  });

  it('hides another principal’s mandate (404, never 403) from its agent and from other humans', async () => {
    const owner = await newPrincipal();
    const stranger = await newPrincipal();
    const { mandate_id } = await activeMandate(owner);
    const strangerAgent = await registerAgent(stranger);
    expect((await call(`/v1/mandates/${mandate_id}`, { headers: { cookie: stranger.cookie } })).status).toBe(404);
    expect((await call(`/v1/mandates/${mandate_id}/revoke`, { method: 'POST', headers: stranger.headers() })).status).toBe(404);
    expect((await strangerAgent.request('GET', `/v1/mandates/${mandate_id}`)).status).toBe(404);
    expect((await strangerAgent.request('POST', '/v1/attestations', { mandate_id, provider: 'cloud' })).status).toBe(404);
  });

  it('refuses a display_hash that no longer matches with 409 display_changed', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const { mandate_id } = (await (await agent.request('POST', '/v1/mandates', mandateBody())).json()) as { mandate_id: string };
    const res = await call(`/v1/mandates/${mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ display_hash: 'f'.repeat(64) }) });
    expect(res.status).toBe(409);
    expect(await res.json()).toMatchObject({ code: 'display_changed' });
  });

  it('needs a sign-in within 5 minutes to approve more than the policy default', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const { mandate_id } = (await (await agent.request('POST', '/v1/mandates', mandateBody({ spend_limit: { amount: 50_000, currency: 'usd', period: 'month' } }))).json()) as {
      mandate_id: string;
    };
    await testEnv.DB.prepare('UPDATE sessions SET auth_time = auth_time - 600 WHERE subject_id = ?1').bind(human.principal_id).run();
    const stale = await call(`/v1/mandates/${mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: '{}' });
    expect(stale.status).toBe(401);
    expect(await stale.json()).toMatchObject({ code: 'reauthentication_required' });
    // Lowering to within the default needs no fresh sign-in.
    const lowered = await call(`/v1/mandates/${mandate_id}/approve`, {
      method: 'POST',
      headers: human.headers(),
      body: JSON.stringify({ spend_limit: { amount: 10_000, currency: 'usd', period: 'month' } }),
    });
    expect(lowered.status).toBe(200);
  });

  it('denies and revokes, each a decision the principal alone can make', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const { mandate_id } = (await (await agent.request('POST', '/v1/mandates', mandateBody())).json()) as { mandate_id: string };
    expect(((await (await call(`/v1/mandates/${mandate_id}/deny`, { method: 'POST', headers: human.headers() })).json()) as { status: string }).status).toBe('denied');
    expect((await call(`/v1/mandates/${mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: '{}' })).status).toBe(409);

    const active = await activeMandate(human, agent);
    const revoked = await call(`/v1/mandates/${active.mandate_id}/revoke`, { method: 'POST', headers: human.headers() });
    expect(((await revoked.json()) as { status: string; revoked_at: string }).status).toBe('revoked');
  });

  it('supersedes an active mandate with a newly approved one', async () => {
    const human = await newPrincipal();
    const first = await activeMandate(human);
    const second = await activeMandate(human, first.agent, { supersedes: first.mandate_id, spend_limit: { amount: 8000, currency: 'usd', period: 'month' } });
    expect(second.mandate).toMatchObject({ status: 'active', supersedes: first.mandate_id });
    const old = (await (await call(`/v1/mandates/${first.mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { status: string; superseded_by: string | null };
    expect(old).toMatchObject({ status: 'superseded', superseded_by: second.mandate_id });

    // A superseded mandate cannot be superseded again: refused, and no trace of the request is left to route.
    const routes = async () => (await DB.prepare('SELECT COUNT(*) AS n FROM mandate_routes WHERE principal_id = ?1').bind(human.principal_id).first<{ n: number }>())!.n;
    const before = await routes();
    const refused = await first.agent.request('POST', '/v1/mandates', mandateBody({ supersedes: first.mandate_id }));
    expect(refused.status).toBe(422);
    expect(await routes()).toBe(before);
  });

  it('names the successor of a mandate superseded before successors were recorded, once its ledger is migrated (schema v17)', async () => {
    const human = await newPrincipal();
    const first = await activeMandate(human);
    const second = await activeMandate(human, first.agent, { supersedes: first.mandate_id });
    const ledger = testEnv.LEDGER.get(testEnv.LEDGER.idFromName(human.principal_id));
    // The ledger as it was at schema v16 (each migration since undone: v17's column, v18's), then started again, as after a deploy.
    await runInDurableObject(ledger, (_, state) => {
      state.storage.sql.exec('ALTER TABLE mandates DROP COLUMN superseded_by');
      state.storage.sql.exec('ALTER TABLE resources DROP COLUMN suspension');
      state.storage.sql.exec(`UPDATE meta SET value = '16' WHERE key = 'schema_version'`);
    });
    await runInDurableObject(ledger, (_, state) => state.abort('restarted by the test')).catch(() => {});
    const old = (await (await call(`/v1/mandates/${first.mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { status: string; superseded_by: string | null };
    expect(old).toMatchObject({ status: 'superseded', superseded_by: second.mandate_id });
    const current = (await (await call(`/v1/mandates/${second.mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { superseded_by: string | null };
    expect(current.superseded_by).toBeNull();
  });

  it('refuses unknown providers and past expiry at request time', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const unknown = await agent.request('POST', '/v1/mandates', mandateBody({ scope: [{ provider: 'nowhere', services: ['x'] }] }));
    expect(unknown.status).toBe(422);
    const past = await agent.request('POST', '/v1/mandates', mandateBody({ expires_at: '2020-01-01T00:00:00Z' }));
    expect(past.status).toBe(422);
  });
});

describe('first contact (device-flow style)', () => {
  it('lets an unregistered key ask, and registers it to the principal who types the user code', async () => {
    const human = await newPrincipal();
    const key = await newAgentKey();
    const stranger = agentClient(key);
    const created = await stranger.request('POST', '/v1/mandates', mandateBody({ agent: { name: 'cli on laptop', public_jwk: key.jwk } }));
    expect(created.status).toBe(201);
    const pending = (await created.json()) as { mandate_id: string; user_code: string; approval_url: string; agent_id: null };
    expect(pending.agent_id).toBeNull();
    expect(pending.approval_url).not.toContain(pending.user_code);
    expect(((await (await stranger.request('GET', `/v1/mandates/${pending.mandate_id}`)).json()) as { status: string }).status).toBe('pending');

    // The page asks for the code before it shows anything.
    const page = await call(`/mandates/${pending.mandate_id}/approval`, { headers: { cookie: human.cookie } });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(await page.text()).toContain('Type the code the agent shows you');

    const wrong = await call(`/v1/mandates/${pending.mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ user_code: 'BBBB-BBBB' }) });
    expect(wrong.status).toBe(403);
    expect(await wrong.json()).toMatchObject({ code: 'invalid_user_code' });

    const shown = await call(`/mandates/${pending.mandate_id}/approval?user_code=${pending.user_code.toLowerCase()}`, { headers: { cookie: human.cookie } });
    const html = await shown.text();
    expect(html).toContain('cli on laptop');
    expect(html).toContain('name not verified');
    expect(html).toContain(key.jkt.slice(0, 4));

    const approved = await call(`/v1/mandates/${pending.mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ user_code: pending.user_code }) });
    expect(approved.status).toBe(200);
    const mandate = (await approved.json()) as { status: string; agent_id: string };
    expect(mandate.status).toBe('active');
    expect(mandate.agent_id).toMatch(/^agt_/);

    // The key is now that agent: its requests are the agent's.
    const polled = (await (await stranger.request('GET', `/v1/mandates/${pending.mandate_id}`)).json()) as { status: string; agent_id: string };
    expect(polled).toMatchObject({ status: 'active', agent_id: mandate.agent_id });
    const agents = (await (await call('/v1/agents', { headers: { cookie: human.cookie } })).json()) as { data: { agent_id: string; registered_via: string }[] };
    expect(agents.data).toEqual([expect.objectContaining({ agent_id: mandate.agent_id, registered_via: 'first_contact' })]);
  });

  it('refuses a first contact whose agent key is not the key that signed it', async () => {
    const [signer, named] = [await newAgentKey(), await newAgentKey()];
    const res = await agentClient(signer).request('POST', '/v1/mandates', mandateBody({ agent: { name: 'x', public_jwk: named.jwk } }));
    expect(res.status).toBe(401);
  });

  it('lets an unregistered key do nothing else: no attestations, no other mandates', async () => {
    const stranger = agentClient(await newAgentKey());
    expect((await stranger.request('POST', '/v1/attestations', { mandate_id: 'mdt_x', provider: 'cloud' })).status).toBe(401);
    const human = await newPrincipal();
    const { mandate_id } = await activeMandate(human);
    expect((await stranger.request('GET', `/v1/mandates/${mandate_id}`)).status).toBe(404);
  });
});

describe('lists', () => {
  it('page with limit and starting_after, newest mandate first', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push(((await (await agent.request('POST', '/v1/mandates', mandateBody())).json()) as { mandate_id: string }).mandate_id);
    const first = (await (await call('/v1/mandates?limit=2', { headers: { cookie: human.cookie } })).json()) as { data: { mandate_id: string }[]; has_more: boolean };
    expect(first.data.map((m) => m.mandate_id)).toEqual([ids[2], ids[1]]);
    expect(first.has_more).toBe(true);
    const next = (await (await call(`/v1/mandates?limit=2&starting_after=${ids[1]}`, { headers: { cookie: human.cookie } })).json()) as typeof first;
    expect(next).toEqual({ data: [expect.objectContaining({ mandate_id: ids[0] })], has_more: false });
    expect((await call('/v1/mandates?limit=0', { headers: { cookie: human.cookie } })).status).toBe(422);
  });
});
