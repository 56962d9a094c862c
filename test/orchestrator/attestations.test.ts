// Attestations (§2.2), revocation and what providers are told (§2.5), and the audit of it all (§4).
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify, SignJWT } from 'jose';
import { describe, expect, it, vi } from 'vitest';
import { auditEvents } from '../../workers/lib/audit-trail';
import type { AuditEvent } from '../../workers/lib/audit';
import { evaluateForProvider } from '../../workers/lib/mandate-constraints';
import { activeMandate, call, newPrincipal, ORCHESTRATOR, registerAgent } from '../support/orchestrator-client';

const testEnv = env as unknown as TestEnv;
const ledgerOf = (id: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(id));
const jwks = async () => createLocalJWKSet((await (await call('/.well-known/jwks.json')).json()) as never);

async function trail(principal: string) {
  const out: AuditEvent[] = [];
  for await (const e of auditEvents(ledgerOf(principal), testEnv.DB, principal, 0)) out.push(e);
  return out;
}


describe('attestations', () => {
  it('are ID-JAG JWTs for one provider: pairwise sub, act, cnf.jkt, ≤ 300 s, signed with a published key', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human, undefined, {
      scope: [
        { provider: 'cloud', services: ['domain'], max_per_charge: { amount: 2000, currency: 'usd' } },
        { provider: 'data', services: ['database'] },
      ],
      share_email: true,
    });
    const res = await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'cloud' });
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const { attestation, expires_in } = (await res.json()) as { attestation: string; expires_in: number };
    expect(expires_in).toBeLessThanOrEqual(300);
    const { payload, protectedHeader } = await jwtVerify(attestation, await jwks(), { issuer: ORCHESTRATOR, audience: 'http://127.0.0.1:8788' });
    expect(protectedHeader.typ).toBe('oauth-id-jag+jwt');
    expect(payload.exp! - payload.iat!).toBeLessThanOrEqual(300);
    expect(payload).toMatchObject({
      client_id: agent.agent_id,
      act: { sub: agent.agent_id },
      cnf: { jkt: agent.key.jkt },
      email: human.email,
      email_verified: true,
      authorization_details: [{ type: 'oap_mandate', mandate_id, services: ['domain'], max_per_charge: { amount: 2000, currency: 'usd' } }],
    });
    expect(payload.sub).not.toBe(human.principal_id);

    const other = decodeJwt(((await (await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'data' })).json()) as { attestation: string }).attestation);
    expect(other.aud).toBe('http://127.0.0.1:8789');
    expect(other.sub).not.toBe(payload.sub); // pairwise: providers cannot join on sub
    expect(other.jti).not.toBe(payload.jti);
    const again = decodeJwt(((await (await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'cloud' })).json()) as { attestation: string }).attestation);
    expect(again.sub).toBe(payload.sub); // stable per provider
  });

  it('leave out the email unless the mandate shares it', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    const { attestation } = (await (await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'cloud' })).json()) as { attestation: string };
    expect(decodeJwt(attestation)).not.toHaveProperty('email');
  });

  it('are refused for a provider outside the mandate (403 provider_not_in_scope)', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    const res = await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'data' });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'provider_not_in_scope' });
  });

  it('stop at once for a revoked mandate (403 mandate_inactive) and a revoked agent (401 agent_revoked)', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    await call(`/v1/mandates/${mandate_id}/revoke`, { method: 'POST', headers: human.headers() });
    const inactive = await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'cloud' });
    expect(inactive.status).toBe(403);
    expect(await inactive.json()).toMatchObject({ code: 'mandate_inactive' });

    const second = await activeMandate(human, agent);
    await call(`/v1/agents/${agent.agent_id}/revoke`, { method: 'POST', headers: human.headers() });
    const revoked = await agent.request('POST', '/v1/attestations', { mandate_id: second.mandate_id, provider: 'cloud' });
    expect(revoked.status).toBe(401);
    expect(await revoked.json()).toMatchObject({ code: 'agent_revoked' });
    const mandate = (await (await call(`/v1/mandates/${second.mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { status: string };
    expect(mandate.status).toBe('revoked');
  });

  it('fail closed when the signed mandate carries a constraint type nobody knows', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    // A mandate signed by a newer orchestrator with a constraint this verifier cannot evaluate.
    await runInDurableObject(ledgerOf(human.principal_id), async (_, state) => {
      const row = state.storage.sql.exec<{ mandate_jws: string }>('SELECT mandate_jws FROM mandates WHERE id = ?', mandate_id).one();
      const claims = decodeJwt(row.mandate_jws);
      const key = (await crypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign'])) as CryptoKeyPair;
      const jws = await new SignJWT({ ...claims, constraints: [...(claims.constraints as object[]), { type: 'geo_fence', region: 'eu' }] })
        .setProtectedHeader(decodeProtectedHeader(row.mandate_jws) as never)
        .sign(key.privateKey);
      state.storage.sql.exec('UPDATE mandates SET mandate_jws = ? WHERE id = ?', jws, mandate_id);
    });
    const res = await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'cloud' });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'mandate_inactive' });
    expect(evaluateForProvider([{ type: 'provider_services', provider: 'cloud', services: ['domain'] }, { type: 'later' }], 'cloud')).toMatchObject({ ok: false });
  });
});

describe('events owed to providers (§2.5)', () => {
  const provider = (name: 'PROVIDER_CLOUD' | 'PROVIDER_DATA') => (env as unknown as Record<string, Fetcher>)[name]!;
  const setStatus = (status: number) =>
    Promise.all((['PROVIDER_CLOUD', 'PROVIDER_DATA'] as const).map((p) => provider(p).fetch('http://provider/_test/status', { method: 'POST', body: String(status) })));
  const received = async (mandateId: string) => {
    const all = await Promise.all((['PROVIDER_CLOUD', 'PROVIDER_DATA'] as const).map(async (p) => (await (await provider(p).fetch('http://provider/_test/received')).json()) as { url: string; body: string }[]));
    return all.flat().filter((r) => JSON.stringify(decodeJwt(r.body)).includes(mandateId));
  };

  it('delivers a signed mandate.revoked SET to each provider in scope, retrying until acknowledged', async () => {
    const human = await newPrincipal();
    const { mandate_id } = await activeMandate(human, undefined, {
      scope: [
        { provider: 'cloud', services: ['domain'] },
        { provider: 'data', services: ['database'] },
      ],
    });
    const ledger = ledgerOf(human.principal_id);
    await setStatus(503);
    try {
      await call(`/v1/mandates/${mandate_id}/revoke`, { method: 'POST', headers: human.headers() });
      await vi.waitFor(async () => expect((await received(mandate_id)).length).toBeGreaterThanOrEqual(2));
      expect(await ledger.pendingProviderEvents()).toHaveLength(2); // refused: kept for a retry
    } finally {
      await setStatus(202);
    }
    // The retry is due after a backoff; bring it forward rather than wait.
    await runInDurableObject(ledger, (_, state) => {
      state.storage.sql.exec('UPDATE provider_events SET next_attempt_at = 0');
      state.storage.sql.exec(`UPDATE schedule SET due_at = 0 WHERE task = 'provider_events'`);
    });
    await runDurableObjectAlarm(ledger);
    await vi.waitFor(async () => expect(await ledger.pendingProviderEvents()).toHaveLength(0));

    const sets = await received(mandate_id);
    expect(new Set(sets.map((r) => new URL(r.url).origin))).toEqual(new Set(['http://127.0.0.1:8788', 'http://127.0.0.1:8789']));
    const { payload, protectedHeader } = await jwtVerify(sets[0]!.body, await jwks(), { issuer: ORCHESTRATOR });
    expect(protectedHeader.typ).toBe('secevent+jwt');
    expect([payload.aud].flat()[0]).toMatch(/^http:\/\/127\.0\.0\.1:878[89]$/);
    expect(payload.events).toEqual({ 'https://oap.dev/events/mandate.revoked': { mandate_id, agent_id: expect.stringMatching(/^agt_/) } });
    const deliveries = (await trail(human.principal_id)).filter((e) => e.action === 'provider_event.deliver');
    expect(deliveries.filter((e) => e.outcome === 'failed').length).toBeGreaterThanOrEqual(2);
    expect(deliveries.filter((e) => e.outcome === 'succeeded')).toHaveLength(2);
  });
});

describe('audit of authorization (§4)', () => {
  it('records every step in the principal’s chain, with the agent as actor where it acted', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'cloud' });
    await agent.request('POST', '/v1/attestations', { mandate_id, provider: 'data' });
    await call(`/v1/agents/${agent.agent_id}/revoke`, { method: 'POST', headers: human.headers() });
    const events = await trail(human.principal_id);
    // Deliveries to providers happen in the background (tested above); the steps themselves are these.
    const summary = events.filter((e) => e.action !== 'provider_event.deliver').map((e) => `${e.actor.type}:${e.action}:${e.outcome}${e.reason ? `:${e.reason}` : ''}`);
    expect(summary).toEqual([
      'principal:principal.create:succeeded',
      'principal:principal.confirm_email:succeeded',
      'principal:session.create:succeeded',
      'principal:agent.register:succeeded',
      'agent:mandate.request:succeeded',
      'principal:mandate.approve:succeeded',
      'agent:attestation.issue:succeeded',
      'agent:attestation.issue:refused:provider_not_in_scope',
      'principal:mandate.revoke:succeeded:agent_revoked',
      'principal:agent.revoke:succeeded',
    ]);
    expect(events.find((e) => e.action === 'mandate.request')!.actor.id).toBe(agent.agent_id);
    // The principal reads it over HTTP too, and it verifies.
    const verify = (await (await call('/v1/audit/verify', { headers: { cookie: human.cookie } })).json()) as { ok: boolean; events: number };
    expect(verify).toMatchObject({ ok: true, first_broken_seq: null });
    expect(verify.events).toBeGreaterThanOrEqual(events.length);
  });

  it('lets an agent read only its own events', async () => {
    const human = await newPrincipal();
    const { agent } = await activeMandate(human);
    const other = await registerAgent(human, 'other');
    const lines = (await (await agent.request('GET', '/v1/audit')).text()).trim().split('\n').map((l) => JSON.parse(l) as AuditEvent);
    expect(lines.length).toBeGreaterThan(0);
    expect(new Set(lines.map((e) => e.actor.id))).toEqual(new Set([agent.agent_id]));
    expect((await (await agent.request('GET', `/v1/audit?agent=${other.agent_id}`)).text()).trim()).toBe('');
  });

  it('refuses an agent the verdict and the signed heads of the whole trail, which would tell it the trail’s size; the principal still reads both', async () => {
    const human = await newPrincipal();
    const { agent } = await activeMandate(human);
    await ledgerOf(human.principal_id).signHeadNow();
    for (const [path, action] of [
      ['/v1/audit/verify', 'audit.verify'],
      ['/v1/audit/heads', 'audit.heads'],
    ] as const) {
      const before = await trail(human.principal_id);
      const res = await agent.request('GET', path);
      expect(res.status, path).toBe(403);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      const body = (await res.json()) as { code: string; events?: unknown; data?: unknown };
      expect(body.code).toBe('human_required');
      expect(body.events ?? body.data).toBeUndefined();
      // The refusal is the one event it leaves, the agent's own.
      const after = await trail(human.principal_id);
      expect(after.slice(0, before.length)).toEqual(before);
      expect(after.slice(before.length)).toEqual([expect.objectContaining({ actor: { type: 'agent', id: agent.agent_id }, action, outcome: 'refused', reason: 'human_required' })]);
    }
    const verified = await call('/v1/audit/verify', { headers: { cookie: human.cookie } });
    expect(verified.status).toBe(200);
    expect(await verified.json()).toMatchObject({ ok: true, first_broken_seq: null });
    const heads = await call('/v1/audit/heads', { headers: { cookie: human.cookie } });
    expect(heads.status).toBe(200);
    expect(((await heads.json()) as { data: unknown[] }).data).toHaveLength(1);
  });
});
