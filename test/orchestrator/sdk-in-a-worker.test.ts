// The agent SDK runs inside a Worker too (issue: "usable from Node and from a
// Worker"): here, in workerd, an agent made with agent/sdk.ts makes first
// contact, waits for its human's approval, reads its own trail, meets a
// refusal as a typed OapError, extends its mandate before it ends, and finds
// the mandate in force once its human extended it, all against the
// orchestrator under test.
import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { generateAgentKey, OapClient, OapError } from '../../agent/sdk';
import { call, newPrincipal, ORCHESTRATOR } from '../support/orchestrator-client';

/** The SDK's fetch, routed to the orchestrator Worker in this isolate. */
const orchestratorFetch: typeof fetch = (input, init) => exports.default.fetch(new Request(input, init));

describe('the SDK inside workerd', () => {
  it('makes first contact, waits for the approval, reads its own trail, and raises refusals as OapError', async () => {
    const { key } = await generateAgentKey();
    const client = new OapClient({ orchestrator: ORCHESTRATOR, key, agentName: 'worker agent', fetch: orchestratorFetch });
    const pending = await client.requestMandate({
      description: 'From inside a Worker',
      scope: [{ provider: 'cloud', services: ['domain'] }],
      spend_limit: { amount: 1500, currency: 'usd', period: 'month' },
      expires_at: new Date(Date.now() + 86_400_000).toISOString(),
    });
    expect(pending).toMatchObject({ status: 'pending', user_code: expect.stringMatching(/^[A-Z]{4}-[A-Z]{4}$/) });

    const human = await newPrincipal();
    const approved = await call(`/v1/mandates/${pending.mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ user_code: pending.user_code }) });
    expect(approved.status).toBe(200);

    const polls: string[] = [];
    const decided = await client.waitForDecision(pending.mandate_id, { sleep: async () => {}, onPoll: (m) => polls.push(m.status) });
    expect(decided).toMatchObject({ status: 'active', spend_limit: { amount: 1500 } });
    expect(polls.at(-1)).toBe('active');

    const trail = await client.audit();
    // Its own events only (§4): its request, not the human's approval.
    expect(trail.map((e) => e.action)).toContain('mandate.request');
    expect(trail.every((e) => e.actor.type === 'agent' && e.actor.id === decided.agent_id)).toBe(true);

    const refused = await client.mandate('mdt_nobodys').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(OapError);
    expect((refused as OapError).code).toBe('not_found');

    // Extended before it ends: the same terms for 90 days, superseding it once the human approves.
    const extension = await client.extendMandate(decided.mandate_id, { days: 90 });
    expect(extension).toMatchObject({ status: 'pending', supersedes: decided.mandate_id, scope: decided.scope, spend_limit: decided.spend_limit, description: 'From inside a Worker' });
    expect(Date.parse(extension.expires_at) - Date.now()).toBeGreaterThan(89 * 86_400_000);
    expect((await call(`/v1/mandates/${extension.mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ user_code: extension.user_code }) })).status).toBe(200);
    expect(await client.mandate(decided.mandate_id)).toMatchObject({ status: 'superseded' });
    expect(await client.mandate(extension.mandate_id)).toMatchObject({ status: 'active' });
    // Only an active mandate can be extended.
    expect(((await client.extendMandate(decided.mandate_id).catch((e: unknown) => e)) as OapError).code).toBe('mandate_inactive');

    // Extended again, by the human: the agent finds the mandate in force from any link of the chain.
    const byHuman = (await (await call(`/v1/mandates/${extension.mandate_id}/extend`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ days: 365 }) })).json()) as { mandate_id: string };
    expect(await client.mandateInForce(decided.mandate_id)).toMatchObject({ mandate_id: extension.mandate_id, status: 'active' });
    expect((await call(`/v1/mandates/${byHuman.mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: '{}' })).status).toBe(200);
    expect(await client.mandateInForce(decided.mandate_id)).toMatchObject({ mandate_id: byHuman.mandate_id, status: 'active', supersedes: extension.mandate_id });
    expect(await client.mandateInForce(extension.mandate_id)).toMatchObject({ mandate_id: byHuman.mandate_id });
    // An extension ends later than the mandate it extends: the SDK asks for none that would not.
    const sooner = (await client.extendMandate(byHuman.mandate_id, { days: 30 }).catch((e: unknown) => e)) as OapError;
    expect(sooner).toBeInstanceOf(OapError);
    expect(sooner.code).toBe('invalid_request');
  });
});
