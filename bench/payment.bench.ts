// Governance is cheap enough to leave on. Figures are medians of interleaved
// rounds: on a shared machine a pause weighs on one round, not on the figure
// (a sum of rounds let one slow round of the baseline flatter the ratio). Each phase's deferred work (the copy
// of audit events to D1, captures owed to the orchestrator) is let finish
// between timings, since it is off the request's path by design and would
// otherwise land in whichever phase its alarm happens to fall in. Prints, as
// ratios measured in this run:
// - governed / ungoverned provisioning throughput over 100 principals (goal ≥ 0.5):
//   the whole paid call (token, signature, idempotency, the saga in the account's
//   ledger, the orchestrator's answer through a service binding, capture through
//   the outbox) against the same service checking and provisioning with no
//   governance at all;
// - one ledger reserve against a bare counter increment, each a Durable Object
//   call (goal ≥ 0.8): the orchestrator's full decision (mandate, scope, per-charge,
//   mandate and monthly limits, velocity, the agent signature's single use, hold,
//   audit event) in one transaction;
//   for reference, a call that adds one row under a random key and decides
//   nothing, against the same increments: the ceiling of any call that records
//   something new, since an increment rewrites a row in place;
// - per-request time with 99 principals in parallel against 1 principal (goal ≤ 1:
//   principals never contend). For reference, also against 1 principal taking as
//   many requests at once: locally each object commits its own SQLite file on
//   the same two cores, which one busy object batches; on the platform objects
//   spread across machines.
import { env } from 'cloudflare:workers';
import { expect, it } from 'vitest';
import { signRequest, verifyRequestSignature } from '../workers/lib/http-signatures';
import { dpopProof, newAgentKey, type AgentKey } from '../test/support/agent-keys';
import { PROVIDER, signAttestation, tokenRequest, useFakeOrchestrator } from '../test/support/fake-orchestrator';
import providerWorker from '../workers/provider/index';
import benchWorker from './bench-worker';
import { median, timed, timedInTurn } from './measure';

type BenchEnv = TestEnv & { COUNTER: DurableObjectNamespace<import('./bench-worker').BareCounter> };
const benchEnv = env as unknown as BenchEnv;
const ctx = { waitUntil: () => {}, passThroughOnException: () => {}, props: {} } as unknown as ExecutionContext;

useFakeOrchestrator();

/**
 * Lets the deferred work of a phase finish (the copy of audit events to D1,
 * captures owed to the orchestrator) before the next phase is timed, so that
 * it does not land in what the next phase measures.
 */
async function settle(ledgerNames: string[]) {
  const ledgers = ledgerNames.map((name) => benchEnv.LEDGER.get(benchEnv.LEDGER.idFromName(name)));
  for (let pass = 0; pass < 100; pass++) {
    const remaining = await Promise.all(ledgers.map(async (l) => (await l.flushAuditOutbox()) + (await l.pendingChargeCalls()).length));
    if (remaining.every((n) => n === 0)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('deferred work did not finish');
}

/** An account with an access token, as the token endpoint gives it to an agent. */
async function account(agent: AgentKey) {
  const attestation = await signAttestation({
    agent,
    agentId: 'agt_bench',
    mandateId: 'mdt_bench',
    claims: {
      authorization_details: [
        { type: 'oap_mandate', mandate_id: 'mdt_bench', services: ['domain'], max_per_charge: null, spend_limit: { amount: 100_000, currency: 'usd', period: 'month' }, expires_at: '2099-01-01T00:00:00.000Z' },
      ],
    },
  });
  const res = await tokenRequest(agent, attestation);
  const token = (await res.json()) as { access_token: string; account_id: string };
  return { agent, token: token.access_token, account: token.account_id };
}

async function paidRequest(a: { agent: AgentKey; token: string }, name: string) {
  const url = `${PROVIDER}/v1/resources`;
  const body = JSON.stringify({ service: 'domain', plan: 'com-1y', parameters: { name } });
  const signed = await signRequest({ method: 'POST', targetUri: url, body, privateKey: a.agent.privateKey, keyid: a.agent.jkt });
  return new Request(url, {
    method: 'POST',
    headers: { authorization: `DPoP ${a.token}`, dpop: await dpopProof(a.agent, 'POST', url, { accessToken: a.token }), 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID(), ...signed },
    body,
  });
}

/**
 * What the orchestrator keeps with a charge it decides (workers/orchestrator/charges.ts): the agent's signed
 * request and the base its signature verified over, so that a reserve here writes a hold of the size it has there.
 */
async function chargeEvidence(agent: AgentKey) {
  const url = `${PROVIDER}/v1/resources`;
  const body = JSON.stringify({ service: 'domain', plan: 'com-1y', parameters: { name: `bench-${crypto.randomUUID().slice(0, 12)}.com` }, expected_price: { amount: 100, currency: 'usd' } });
  const signed = await signRequest({ method: 'POST', targetUri: url, body, privateKey: agent.privateKey, keyid: agent.jkt });
  const call = { method: 'POST', target_uri: url, body, content_digest: signed['content-digest'], signature_input: signed['signature-input'], signature: signed.signature };
  const verified = await verifyRequestSignature({ method: 'POST', targetUri: url, body, contentDigest: call.content_digest, signatureInput: call.signature_input, signature: call.signature }, agent.jwk, agent.jkt);
  return JSON.stringify({ agent_request: call, signature_base: verified.base, key_thumbprint: agent.jkt, billing: 'year' });
}

/** A principal whose ledger holds an active mandate, for direct reserve calls. */
async function principalWithMandate() {
  const principal = `prn_bench_${crypto.randomUUID()}`;
  const ledger = benchEnv.LEDGER.get(benchEnv.LEDGER.idFromName(principal));
  const agentId = `agt_${crypto.randomUUID()}`;
  const agent = await newAgentKey();
  const evidence = await chargeEvidence(agent);
  await ledger.registerAgent(principal, { agent_id: agentId, name: 'bench', public_jwk: agent.jwk, key_thumbprint: agent.jkt });
  const mandateId = `mdt_${crypto.randomUUID()}`;
  const terms = {
    description: 'bench',
    scope: [{ provider: 'cloud', services: ['domain'] }],
    spend_limit: { amount: 1_000_000, currency: 'usd', period: 'month' as const },
    expires_at: '2099-01-01T00:00:00.000Z',
    share_email: false,
    supersedes: null,
  };
  await ledger.createMandate(principal, { mandate_id: mandateId, agent_id: agentId, terms, pending_until: Date.now() + 600_000, first_contact: false });
  const claims = { constraints: [{ type: 'provider_services', provider: 'cloud', services: ['domain'] }, { type: 'spend_limit', limit: terms.spend_limit }, { type: 'not_after', time: terms.expires_at }] };
  const unsigned = `${btoa(JSON.stringify({ alg: 'EdDSA' }))}.${btoa(JSON.stringify(claims)).replaceAll('=', '')}.sig`;
  await ledger.approveMandate(principal, mandateId, { approved: terms, display_hash: 'h', mandate_jws: unsigned, approver_email_hint: 'b…@x', decided_at: new Date().toISOString() });
  await ledger.setOwnLimit(principal, { amount: 1_000_000, currency: 'usd' });
  let n = 0;
  const reserve = () =>
    ledger.authorizeCharge(principal, {
      charge_id: `chg_${principal}_${++n}`,
      provider: 'cloud',
      provider_jti: crypto.randomUUID(),
      provider_jti_expires_ms: Date.now() + 60_000,
      mandate_id: mandateId,
      agent_id: agentId,
      service: 'domain',
      plan: 'com-1y',
      amount: { amount: 100, currency: 'usd' },
      description: 'bench',
      resource_ref: null,
      idempotency_key: crypto.randomUUID(),
      token_jti: 'tok',
      evidence,
      // One signed agent request backs one charge: its signature's nonce is used up with the hold.
      agent_signature: { nonce: `sig:bench:${crypto.randomUUID()}`, expires_ms: Date.now() + 360_000 },
    });
  return { principal, reserve };
}

it('payment ratios', async () => {
  // One reserve against a bare increment: 32 interleaved rounds of 60 sequential calls each, the
  // median round, so that a pause on a shared machine weighs on one round, not on the figure
  // (a principal takes at most 100 charges an hour). Every other round times the increments first,
  // so that neither side is always the one right after the other. It runs first, before the phases
  // that leave hundreds of objects behind, and checks its outcomes after each timing, not inside it.
  const principals = await Promise.all(Array.from({ length: 32 }, () => principalWithMandate()));
  const counter = benchEnv.COUNTER.get(benchEnv.COUNTER.idFromName(`counter-${crypto.randomUUID()}`));
  for (let i = 0; i < 20; i++) await counter.increment();
  for (let i = 0; i < 20; i++) await counter.insertRow();
  for (const p of principals) await p.reserve();
  await settle(principals.map((p) => p.principal));
  const reserveRatios: number[] = [];
  // For reference: a call that adds one row and decides nothing, against the same increments.
  const rowRatios: number[] = [];
  for (const [round, p] of principals.entries()) {
    const timeReserves = async () => {
      const outcomes: boolean[] = [];
      const took = await timed(async () => {
        for (let i = 0; i < 60; i++) outcomes.push((await p.reserve()).ok);
      });
      expect(outcomes.every(Boolean)).toBe(true);
      // The round's events reach D1 now, between timings, rather than in whichever round their alarm lands.
      await settle([p.principal]);
      return took;
    };
    const timeIncrements = () =>
      timed(async () => {
        for (let i = 0; i < 60; i++) await counter.increment();
      });
    const [reserves, increments] = await timedInTurn(round, timeReserves, timeIncrements);
    reserveRatios.push(increments / reserves);
    const rows = await timed(async () => {
      for (let i = 0; i < 60; i++) await counter.insertRow();
    });
    rowRatios.push(increments / rows);
  }

  // Governed / ungoverned over 100 principals, 5 interleaved rounds (fresh accounts and names each), the median round.
  const governedRatios: number[] = [];
  for (let round = 0; round < 5; round++) {
    const accounts = await Promise.all(Array.from({ length: 100 }, async () => account(await newAgentKey())));
    const governedRequests = await Promise.all(accounts.map((a) => paidRequest(a, `gov-${crypto.randomUUID().slice(0, 12)}.com`)));
    const warm = await providerWorker.fetch(await paidRequest(accounts[0]!, `warm-${crypto.randomUUID().slice(0, 8)}.com`), benchEnv, ctx);
    expect(warm.status).toBe(201);
    const governed = await timed(async () => {
      const responses = await Promise.all(governedRequests.map((r) => providerWorker.fetch(r, benchEnv, ctx)));
      expect(responses.every((r) => r.status === 201)).toBe(true);
    });
    await settle(accounts.map((a) => a.account));
    const ungovernedRequests = await Promise.all(
      accounts.map(async (a) => {
        const url = `${PROVIDER}/bench/ungoverned`;
        return new Request(url, {
          method: 'POST',
          headers: { authorization: `DPoP ${a.token}`, dpop: await dpopProof(a.agent, 'POST', url, { accessToken: a.token }), 'content-type': 'application/json', 'idempotency-key': crypto.randomUUID() },
          body: JSON.stringify({ service: 'domain', plan: 'com-1y', parameters: { name: `plain-${crypto.randomUUID().slice(0, 12)}.com` } }),
        });
      }),
    );
    const ungoverned = await timed(async () => {
      const responses = await Promise.all(ungovernedRequests.map((r) => benchWorker.fetch(r, benchEnv, ctx)));
      expect(responses.every((r) => r.status === 201)).toBe(true);
    });
    await settle(accounts.map((a) => a.account));
    governedRatios.push(ungoverned / governed);
  }

  // Per-request time of 99 requests: 1 principal taking them one after another, 99 principals
  // taking one each in parallel, and (for reference) 1 principal taking all 99 at once; 5 interleaved rounds.
  const many = await Promise.all(Array.from({ length: 99 }, () => principalWithMandate()));
  await Promise.all(many.map((p) => p.reserve()));
  await settle([...principals, ...many].map((p) => p.principal));
  let onePrincipal = 0;
  let manyPrincipals = 0;
  let oneContended = 0;
  for (let round = 0; round < 5; round++) {
    const one = await principalWithMandate();
    await one.reserve();
    onePrincipal += await timed(async () => {
      for (let i = 0; i < 49; i++) await one.reserve();
    });
    oneContended += await timed(() => Promise.all(Array.from({ length: 49 }, () => one.reserve())));
    manyPrincipals += await timed(() => Promise.all(many.map((p) => p.reserve())));
  }
  onePrincipal /= 49;
  oneContended /= 49;
  manyPrincipals /= 99;

  const rows: [string, number, string][] = [
    ['governed / ungoverned provisioning throughput, 100 principals (median of 5 rounds)', median(governedRatios), '≥ 0.50'],
    ['ledger reserve / bare counter increment throughput (median of 32 rounds)', median(reserveRatios), '≥ 0.80'],
    ['one new row and nothing else / bare counter increment throughput (the same rounds)', median(rowRatios), 'info'],
    ['per-request time, 99 principals in parallel / 1 principal', manyPrincipals / onePrincipal, '≤ 1.00'],
    ['per-request time, 99 principals in parallel / 1 principal taking as many in parallel', manyPrincipals / oneContended, 'info'],
  ];
  console.log('\nratio  goal    measurement');
  for (const [name, ratio, goal] of rows) console.log(`${ratio.toFixed(2).padStart(5)}  ${goal.padEnd(6)}  ${name}`);
});
