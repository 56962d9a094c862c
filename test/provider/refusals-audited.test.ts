// PROTOCOL.md §4 at a provider: every refusal of a paid call is an event in the
// account's trail, the agent its actor, once, and nothing else changes. Those
// the ledger records with the state they refuse (the account's limit, the
// service's own check) are not recorded a second time by the route.
import { env } from 'cloudflare:test';
import { describe, expect, it } from 'vitest';
import { signRequest } from '../../workers/lib/http-signatures';
import { dpopProof } from '../support/agent-keys';
import { call, PROVIDER, useFakeOrchestrator } from '../support/fake-orchestrator';
import { accountTrail, agentWithToken, paidCall, type TokenAgent } from '../support/paid-calls';

useFakeOrchestrator();

const testEnv = env as unknown as TestEnv;
const ledgerOf = (account: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(account));
const trail = accountTrail;

const domain = (plan = 'com-1y', extra: Record<string, unknown> = {}) => ({ service: 'domain', plan, parameters: { name: `refused-${crypto.randomUUID().slice(0, 12)}.com` }, ...extra });

/** A POST /v1/resources with a part left out or spoiled, or sent again as it was (`again`: its body and signature). */
async function rawProvision(agent: TokenAgent, change: { signature?: 'spoiled'; idempotencyKey?: null; again?: { body: string; signed: Record<string, string> } }) {
  const url = `${PROVIDER}/v1/resources`;
  const body = change.again?.body ?? JSON.stringify(domain());
  const signed = change.again?.signed ?? (await signRequest({ method: 'POST', targetUri: url, body, privateKey: agent.key.privateKey, keyid: agent.key.jkt }));
  const headers: Record<string, string> = {
    authorization: `DPoP ${agent.token}`,
    dpop: await dpopProof(agent.key, 'POST', url, { accessToken: agent.token }),
    'content-type': 'application/json',
    ...signed,
    ...(change.signature === 'spoiled' ? { signature: signed.signature!.replace(/:[A-Za-z0-9+/]{4}/, ':AAAA') } : {}),
    ...(change.idempotencyKey === null ? {} : { 'idempotency-key': crypto.randomUUID() }),
  };
  const res = await call('/v1/resources', { method: 'POST', headers, body });
  return { status: res.status, body: (await res.json()) as { code: string }, sent: { body, signed } };
}

describe('a refused paid call is in the account’s trail, once, and changes nothing else (§4)', () => {
  it('records each refusal the route or the catalog makes: scope, catalog, price, signature, nonce, Idempotency-Key', async () => {
    const agent = await agentWithToken();
    const refusals: [string, number, () => Promise<{ status: number; body: Record<string, unknown> }>][] = [
      ['insufficient_scope', 403, () => paidCall(agent, 'POST', '/v1/resources', { service: 'workers-paid', plan: 'paid', parameters: {} })],
      // Checked against the catalog first (§3.1 step 1): a service no catalog here has is not a question of scope.
      ['invalid_parameters', 422, () => paidCall(agent, 'POST', '/v1/resources', { service: 'database', plan: 'free', parameters: { name: 'db' } })],
      ['invalid_parameters', 422, () => paidCall(agent, 'POST', '/v1/resources', domain('com-9y'))],
      ['price_changed', 409, () => paidCall(agent, 'POST', '/v1/resources', domain('com-1y', { expected_price: { amount: 1, currency: 'usd' } }))],
      ['invalid_signature', 401, () => rawProvision(agent, { signature: 'spoiled' })],
      ['idempotency_key_required', 400, () => rawProvision(agent, { idempotencyKey: null })],
    ];
    for (const [code, status, attempt] of refusals) {
      const res = await attempt();
      expect(res.status, JSON.stringify(res.body)).toBe(status);
      expect(res.body.code).toBe(code);
    }
    // A signature's nonce used twice: the second call is refused as a replay.
    const first = await rawProvision(agent, {});
    expect(first.status).toBe(201);
    // Under another Idempotency-Key, so that it is not a retry but a second call on one signature.
    const replay = await rawProvision(agent, { again: first.sent });
    expect(replay.body.code).toBe('replayed');

    const events = await trail(agent.account);
    const refused = events.filter((e) => e.outcome === 'refused');
    expect(refused.map((e) => [e.action, e.reason])).toEqual([...refusals.map(([code]) => ['resource.provision', code]), ['resource.provision', 'replayed']]);
    expect(refused.every((e) => e.actor.type === 'agent' && e.actor.id === agent.agentId && e.mandate_id === agent.mandateId)).toBe(true);
    // Nothing else: one provision, one hold, for the one call that was not refused.
    expect(events.filter((e) => e.outcome === 'succeeded' && e.action === 'resource.provision')).toHaveLength(1);
    expect(await ledgerOf(agent.account).spentThisPeriod()).toBe(1044);
  });

  it('records a refusal by the account’s own limit once, as the ledger made it', async () => {
    const agent = await agentWithToken();
    await ledgerOf(agent.account).setOwnLimit(agent.account, { amount: 500, currency: 'usd' });
    const before = (await trail(agent.account)).length;
    const res = await paidCall(agent, 'POST', '/v1/resources', domain());
    expect(res.status).toBe(402);
    expect(res.body.code).toBe('spend_limit_exceeded');
    const after = (await trail(agent.account)).slice(before);
    expect(after.map((e) => [e.action, e.outcome, e.reason])).toEqual([['charge.reserve', 'refused', 'spend_limit_exceeded']]);
  });
});
