// Chains of mandates as a property (PROTOCOL.md §2.1: a raised limit or a
// later end is a new mandate that supersedes the one in force): random runs of
// requests to supersede the mandate in force (by its agent, or by its human
// with Extend), approvals, denials, revocations and fresh requests, through
// the orchestrator's API. After every step the principal's mandates are read
// back and the chains checked: one mandate in force at most, `superseded_by`
// links that lead to it, and no request left pending that could never be
// approved. An agent following the links (the SDK's mandateInForce) lands on it.
import { exports } from 'cloudflare:workers';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { generateAgentKey, OapClient, OapError } from '../../agent/sdk';
import { call, mandateBody, newPrincipal, ORCHESTRATOR, type Human } from '../support/orchestrator-client';

type Mandate = { mandate_id: string; status: string; supersedes: string | null; superseded_by: string | null; expires_at: string };

type Step =
  | { kind: 'agent_supersedes'; days: number }
  | { kind: 'human_extends'; days: 30 | 90 | 365 }
  | { kind: 'approve'; pick: number }
  | { kind: 'deny'; pick: number }
  | { kind: 'revoke' }
  | { kind: 'fresh' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('agent_supersedes' as const), days: fc.integer({ min: 200, max: 365 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('human_extends' as const), days: fc.constantFrom(30 as const, 90 as const, 365 as const) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('approve' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('deny' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('revoke' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fresh' as const) }) },
);

const orchestratorFetch: typeof fetch = (input, init) => exports.default.fetch(new Request(input, init));

async function mandatesOf(human: Human): Promise<Mandate[]> {
  const res = await call('/v1/mandates?limit=100', { headers: { cookie: human.cookie } });
  return ((await res.json()) as { data: Mandate[] }).data;
}

/** What must hold of a principal's mandates whatever happened before. */
function chainProblems(mandates: Mandate[]): string[] {
  const byId = new Map(mandates.map((m) => [m.mandate_id, m]));
  const problems: string[] = [];
  for (const m of mandates) {
    if (m.status === 'superseded') {
      const next = m.superseded_by ? byId.get(m.superseded_by) : undefined;
      if (!next) problems.push(`${m.mandate_id} is superseded but names no successor`);
      else if (next.supersedes !== m.mandate_id) problems.push(`${m.mandate_id}'s successor ${next.mandate_id} supersedes ${next.supersedes}`);
      else if (next.status === 'pending' || next.status === 'denied') problems.push(`${m.mandate_id} is superseded by ${next.mandate_id}, which was never approved (${next.status})`);
    } else if (m.superseded_by !== null) problems.push(`${m.mandate_id} is ${m.status} yet names a successor`);
    // A request to supersede a mandate no longer in force could never be approved: it must not be left waiting.
    const target = m.supersedes ? byId.get(m.supersedes) : undefined;
    if (m.status === 'pending' && target && (target.status === 'superseded' || target.status === 'revoked')) {
      problems.push(`${m.mandate_id} still waits to supersede ${target.mandate_id}, which is ${target.status}`);
    }
  }
  // Each chain (a first mandate and the links after it) has one mandate in force at most, at its end.
  for (const first of mandates.filter((m) => m.supersedes === null && m.status !== 'pending' && m.status !== 'denied')) {
    const seen = new Set<string>();
    let link = first;
    while (link.status === 'superseded' && link.superseded_by && !seen.has(link.mandate_id)) {
      seen.add(link.mandate_id);
      link = byId.get(link.superseded_by) ?? link;
    }
    if (seen.has(link.mandate_id)) problems.push(`the chain from ${first.mandate_id} loops`);
    const inForce = mandates.filter((m) => m.status === 'active' && chainOf(byId, m) === first.mandate_id);
    if (inForce.length > 1) problems.push(`the chain from ${first.mandate_id} has ${inForce.length} active mandates`);
    if (inForce.length === 1 && inForce[0]!.mandate_id !== link.mandate_id) problems.push(`the chain from ${first.mandate_id} ends at ${link.mandate_id}, not at ${inForce[0]!.mandate_id}, the one in force`);
  }
  return problems;
}

/** The first mandate of `m`'s chain, by its supersedes links. */
function chainOf(byId: Map<string, Mandate>, m: Mandate): string {
  let link = m;
  for (let i = 0; link.supersedes && i < 1000; i++) link = byId.get(link.supersedes) ?? link;
  return link.mandate_id;
}

describe('chains of mandates', () => {
  it('keep one mandate in force at the end of their superseded_by links, and no request waiting that could never be approved, whoever asks and decides in whatever order', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 4, maxLength: 14 }), async (steps) => {
        const human = await newPrincipal();
        const { key } = await generateAgentKey();
        const agent = new OapClient({ orchestrator: ORCHESTRATOR, key, agentName: 'chain agent', fetch: orchestratorFetch });
        // The agent makes first contact; its human approves: the first chain. It ends in 20 days, so that each offered
        // extension (30, 90, 365 days) ends later, until a longer one is in force.
        const inDays = (days: number) => new Date(Date.now() + days * 86_400_000).toISOString();
        const first = await agent.requestMandate(mandateBody({ expires_at: inDays(20) }) as never);
        expect((await call(`/v1/mandates/${first.mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ user_code: first.user_code }) })).status).toBe(200);
        let kept = first.mandate_id;
        /** A new chain, as an agent asks once its mandate has ended. */
        const freshChain = async () => {
          const fresh = await agent.requestMandate(mandateBody({ expires_at: inDays(20) }) as never);
          expect((await call(`/v1/mandates/${fresh.mandate_id}/approve`, { method: 'POST', headers: human.headers(), body: '{}' })).status).toBe(200);
          kept = fresh.mandate_id;
        };
        for (const step of steps) {
          const inForce = await agent.mandateInForce(kept);
          expect(inForce.status).toBe('active');
          const endsIn = Date.parse(inForce.expires_at) - Date.now();
          if (step.kind === 'agent_supersedes') {
            await agent.requestMandate(mandateBody({ supersedes: inForce.mandate_id, expires_at: inDays(step.days) }) as never);
          } else if (step.kind === 'human_extends') {
            const res = await call(`/v1/mandates/${inForce.mandate_id}/extend`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ days: step.days }) });
            // Refused only when it would not end a day past the mandate in force (workers/lib/mandate-extensions.ts).
            expect(res.status, await res.clone().text()).toBe(step.days * 86_400_000 >= endsIn + 86_400_000 ? 201 : 422);
          } else if (step.kind === 'approve' || step.kind === 'deny') {
            const pending = (await mandatesOf(human)).filter((m) => m.status === 'pending');
            const chosen = pending[step.pick % Math.max(1, pending.length)];
            // Whatever waits supersedes the mandate in force (nothing else is left waiting), so it can be decided.
            if (chosen) expect((await call(`/v1/mandates/${chosen.mandate_id}/${step.kind}`, { method: 'POST', headers: human.headers(), body: '{}' })).status).toBe(200);
          } else if (step.kind === 'revoke') {
            expect((await call(`/v1/mandates/${inForce.mandate_id}/revoke`, { method: 'POST', headers: human.headers() })).status).toBe(200);
            const mandates = await mandatesOf(human);
            expect(chainProblems(mandates), JSON.stringify({ steps, mandates })).toEqual([]);
            await freshChain();
          } else {
            await freshChain();
          }
          const mandates = await mandatesOf(human);
          expect(chainProblems(mandates), JSON.stringify({ steps, mandates })).toEqual([]);
          // The agent, following the links from the first mandate of its current chain, lands on the mandate in force.
          const byId = new Map(mandates.map((m) => [m.mandate_id, m]));
          const chain = chainOf(byId, byId.get(kept)!);
          const active = mandates.filter((m) => m.status === 'active' && chainOf(byId, m) === chain);
          const landed = await agent.mandateInForce(kept);
          if (active.length === 1) expect(landed.mandate_id).toBe(active[0]!.mandate_id);
          else expect(landed.status).not.toBe('active');
        }
      }),
      { numRuns: 12, interruptAfterTimeLimit: 90_000, markInterruptAsFailure: true },
    );
  }, 180_000);
});
