// Spend never exceeds what the human allowed, whatever happens between the
// steps: a revocation mid-saga, a period boundary mid-saga, re-approvals.
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { AuditEntry, AuditEvent } from '../../workers/lib/audit';
import type { LedgerTx } from '../../durable-objects/ledger/context';
import { billingPeriod, captureHold, checkLimits, insertHold, spent, voidHold } from '../../durable-objects/ledger/spend';
import { asProvider, chargeBody, subjectAt } from '../support/fake-provider';
import { activeMandate, call, newPrincipal, registerAgent } from '../support/orchestrator-client';

const testEnv = env as unknown as TestEnv;
const ledgerOf = (id: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(id));

describe('spend invariants', () => {
  it('a mandate revoked between authorize and capture: the capture stands, nothing new is authorized', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    const sub = await subjectAt(agent, mandate_id, 'cloud');
    const body = () => chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount: 1044 });
    const { charge_id } = (await (await asProvider('cloud', 'POST', '/v1/charges', await body())).json()) as { charge_id: string };
    await call(`/v1/mandates/${mandate_id}/revoke`, { method: 'POST', headers: human.headers() });
    // The authorization was given while the mandate was active, for work the provider has done.
    const captured = await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, {});
    expect(((await captured.json()) as { status: string }).status).toBe('captured');
    const next = await asProvider('cloud', 'POST', '/v1/charges', await body());
    expect(await next.json()).toMatchObject({ status: 402, code: 'mandate_inactive' });
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(1044);
  });

  it('100 re-approvals of the same agent in one period never reset the monthly limit', async () => {
    const human = await newPrincipal();
    const agent = await registerAgent(human);
    let authorized = 0;
    let declined = 0;
    for (let i = 0; i < 100; i++) {
      // Each re-approval is a fresh mandate of $50 a month; the principal's own limit is $100 a month.
      const { mandate_id } = await activeMandate(human, agent, { spend_limit: { amount: 5000, currency: 'usd', period: 'month' }, scope: [{ provider: 'cloud', services: ['domain'] }] });
      const sub = await subjectAt(agent, mandate_id, 'cloud');
      const res = await asProvider('cloud', 'POST', '/v1/charges', await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount: 1044 }));
      if (res.status === 201) authorized++;
      else {
        expect(await res.json()).toMatchObject({ code: 'spend_limit_exceeded', limit: { amount: 10_000 } });
        declined++;
      }
    }
    expect(authorized).toBe(9); // 9 × $10.44 = $93.96 ≤ $100 < 10 × $10.44
    expect(declined).toBe(91);
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(9396);
  }, 120_000);

  it('a hold authorized in one period and captured in the next counts in the period it was authorized', async () => {
    const principal = `prn_period_${crypto.randomUUID()}`;
    await runInDurableObject(ledgerOf(principal), (_, state) => {
      const events: AuditEntry[] = [];
      const tx = (now: number): LedgerTx => ({ sql: state.storage.sql, now, audit: (e) => (events.push(e), {} as AuditEvent), schedule: () => {} });
      const lastMoment = Date.UTC(2026, 10, 30, 23, 59, 59, 999);
      const firstMoment = Date.UTC(2026, 11, 1, 0, 0, 0, 0);
      const november = billingPeriod(lastMoment);
      const december = billingPeriod(firstMoment);
      expect([november, december]).toEqual(['2026-11', '2026-12']);
      const limit = { amount: 10_000, currency: 'usd' };
      // November: $90 authorized at the last millisecond.
      expect(checkLimits(state.storage.sql, november, { amount: 9000, currency: 'usd' }, [{ scope: 'principal', limit }])).toBeNull();
      insertHold(tx(lastMoment), { id: 'chg_nov', amount: { amount: 9000, currency: 'usd' }, ttl_ms: 600_000, scopes: ['principal'] });
      // Captured in December: it stays November's spend, and December starts empty.
      expect(captureHold(tx(firstMoment), 'chg_nov', { type: 'provider', id: 'cloud' }).ok).toBe(true);
      expect(spent(state.storage.sql, november, 'principal')).toBe(9000);
      expect(spent(state.storage.sql, december, 'principal')).toBe(0);
      // A second $90 in November would not fit; in December it does.
      expect(checkLimits(state.storage.sql, november, { amount: 9000, currency: 'usd' }, [{ scope: 'principal', limit }])?.code).toBe('spend_limit_exceeded');
      expect(checkLimits(state.storage.sql, december, { amount: 9000, currency: 'usd' }, [{ scope: 'principal', limit }])).toBeNull();
      // Voiding a November hold in December releases November's spend, not December's.
      insertHold(tx(lastMoment), { id: 'chg_nov2', amount: { amount: 500, currency: 'usd' }, ttl_ms: 600_000, scopes: ['principal'] });
      expect(voidHold(tx(firstMoment), 'chg_nov2', { type: 'system', id: 'test' }, 'expired').ok).toBe(true);
      expect(spent(state.storage.sql, november, 'principal')).toBe(9000);
      expect(spent(state.storage.sql, december, 'principal')).toBe(0);
    });
  });
});
