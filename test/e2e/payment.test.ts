// Governed provisioning across the three running Workers (PROTOCOL.md §3):
// an agent pays through its principal's orchestrator without seeing a card,
// inside every limit, and a refusal leaves nothing provisioned or charged.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import { describe, expect, inject, it } from 'vitest';
import { signRequest } from '../../workers/lib/http-signatures';
import { dpopProof, newAgentKey, type AgentKey } from '../support/agent-keys';
import { asAgent, asHuman, auditLines, inDays, readJson, registerAgent, signIn, signUpVerified, sleep, type HumanSession, type Json } from './support';

const urls = inject('urls');
const PASSWORD = 'payment test password';

type PaidAgent = { key: AgentKey; agentId: string; mandateId: string; human: HumanSession; token: Record<'cloud' | 'data', string> };

async function paidAgent(terms: Json = {}): Promise<PaidAgent> {
  const email = `payer-${crypto.randomUUID().slice(0, 8)}@example.test`;
  await signUpVerified(urls.orchestrator, email, PASSWORD);
  const human = await signIn(urls.orchestrator, email, PASSWORD);
  const key = await newAgentKey();
  const agentId = await registerAgent(human, key, 'payment agent');
  const created = await readJson(
    await asAgent(key, urls.orchestrator, 'POST', '/v1/mandates', {
      description: 'Provision the demo stack',
      scope: [
        { provider: 'cloud', services: ['domain', 'worker-script', 'workers-paid'] },
        { provider: 'data', services: ['database'] },
      ],
      spend_limit: { amount: 5000, currency: 'usd', period: 'month' },
      expires_at: inDays(30),
      ...terms,
    }),
  );
  const approved = await asHuman(human, 'POST', `/v1/mandates/${created.mandate_id}/approve`, { json: {} });
  expect(approved.status).toBe(200);
  const token = {} as PaidAgent['token'];
  const providers = ((terms.scope as Json[] | undefined)?.map((s) => s.provider) ?? ['cloud', 'data']) as ('cloud' | 'data')[];
  for (const provider of providers) {
    const { attestation } = await readJson(await asAgent(key, urls.orchestrator, 'POST', '/v1/attestations', { mandate_id: created.mandate_id, provider }));
    const res = await fetch(`${urls[provider]}/oauth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(key, 'POST', `${urls[provider]}/oauth/token`) },
      body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: attestation }),
    });
    const body = await readJson(res);
    expect(res.status, JSON.stringify(body)).toBe(200);
    token[provider] = body.access_token;
  }
  return { key, agentId, mandateId: created.mandate_id, human, token };
}

/** A paid call as §3.1 wants it: DPoP-bound token, RFC 9421 signature over the body, Idempotency-Key. */
async function paidCall(agent: PaidAgent, provider: 'cloud' | 'data', method: string, path: string, json: unknown, idempotencyKey: string) {
  const url = `${urls[provider]}${path}`;
  const body = JSON.stringify(json);
  const signed = await signRequest({ method, targetUri: url, body, privateKey: agent.key.privateKey, keyid: agent.key.jkt });
  return fetch(url, {
    method,
    headers: {
      authorization: `DPoP ${agent.token[provider]}`,
      dpop: await dpopProof(agent.key, method, url, { accessToken: agent.token[provider] }),
      'content-type': 'application/json',
      'idempotency-key': idempotencyKey,
      ...signed,
    },
    body,
  });
}

async function tokenGet(agent: PaidAgent, provider: 'cloud' | 'data', path: string) {
  const url = `${urls[provider]}${path}`;
  return fetch(url, { headers: { authorization: `DPoP ${agent.token[provider]}`, dpop: await dpopProof(agent.key, 'GET', url, { accessToken: agent.token[provider] }) } });
}

async function chargeOf(agent: PaidAgent, chargeId: string) {
  return readJson(await asHuman(agent.human, 'GET', `/v1/charges/${chargeId}`));
}

const domainName = () => `pay-${crypto.randomUUID().slice(0, 10)}.com`;

describe('provisioning through the saga', () => {
  it('provisions a domain, charges it at the orchestrator, captures both and signs a receipt', async () => {
    const agent = await paidAgent();
    const name = domainName();
    const res = await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name }, expected_price: { amount: 1044, currency: 'usd' } }, 'k1');
    const body = await readJson(res);
    expect(res.status, JSON.stringify(body)).toBe(201);
    expect(body).toMatchObject({ service: 'domain', plan: 'com-1y', status: 'active', name, charge_id: expect.stringMatching(/^chg_/), audit_event_id: expect.stringMatching(/^evt_/) });

    const { payload } = await jwtVerify(body.receipt, createRemoteJWKSet(new URL(`${urls.cloud}/.well-known/jwks.json`)), { issuer: urls.cloud });
    expect(payload).toMatchObject({ charge_id: body.charge_id, resource_id: body.resource_id, agent_id: agent.agentId, mandate_id: agent.mandateId, amount: 1044, currency: 'usd' });
    expect((payload.constraint_results as { pass: boolean }[]).every((r) => r.pass)).toBe(true);

    // Capture at the orchestrator is off the request's path, but lands within seconds.
    let charge: Json = {};
    for (let i = 0; i < 40 && charge.status !== 'captured'; i++) {
      charge = await chargeOf(agent, body.charge_id);
      if (charge.status !== 'captured') await sleep(250);
    }
    expect(charge).toMatchObject({ status: 'captured', amount: 1044, provider: 'cloud', service: 'domain', agent_id: agent.agentId, receipt: body.receipt });

    // The two trails join charge by charge: each names the other's event (§4 related).
    const orchestratorTrail = auditLines(await (await asHuman(agent.human, 'GET', '/v1/audit')).text());
    const authorizeEvent = orchestratorTrail.find((e) => e.action === 'charge.authorize' && e.target === body.charge_id)!;
    const captureEvent = orchestratorTrail.find((e) => e.action === 'charge.capture' && e.target === body.charge_id)!;
    expect(captureEvent.related).toContain(body.audit_event_id);
    const providerTrail = auditLines(await (await tokenGet(agent, 'cloud', '/v1/audit')).text());
    const provisionEvent = providerTrail.find((e) => e.id === body.audit_event_id)!;
    expect(provisionEvent).toMatchObject({ action: 'resource.provision', target: body.resource_id });
    expect(provisionEvent.related).toEqual(expect.arrayContaining([body.charge_id, authorizeEvent.id]));
    const reserveEvent = providerTrail.find((e) => e.action === 'charge.reserve' && e.target === body.resource_id)!;
    expect(authorizeEvent.related).toContain(reserveEvent.id);

    const listed = await readJson(await tokenGet(agent, 'cloud', '/v1/resources'));
    expect(listed.data.map((r: Json) => r.resource_id)).toContain(body.resource_id);
    const usage = await readJson(await tokenGet(agent, 'cloud', '/v1/usage'));
    expect(usage).toMatchObject({ spent: { amount: 1044 }, services: [{ service: 'domain', spent: { amount: 1044 } }] });
    const limits = await readJson(await asHuman(agent.human, 'GET', '/v1/limits'));
    expect(limits.data).toContainEqual(expect.objectContaining({ scope: 'principal', limit: { amount: 10_000, currency: 'usd' }, spent: { amount: 1044, currency: 'usd' } }));
  });

  it('replays an Idempotency-Key (signed again) with the first answer, refuses it with another body', async () => {
    const agent = await paidAgent();
    const request = { service: 'domain', plan: 'com-1y', parameters: { name: domainName() } };
    const first = await readJson(await paidCall(agent, 'cloud', 'POST', '/v1/resources', request, 'same-key'));
    const replays = await Promise.all([1, 2, 3, 4].map(() => paidCall(agent, 'cloud', 'POST', '/v1/resources', request, 'same-key')));
    const settled = replays.filter((r) => r.status === 201);
    for (const r of settled) {
      expect(r.headers.get('idempotent-replayed')).toBe('true');
      expect((await readJson(r)).charge_id).toBe(first.charge_id);
    }
    const other = await paidCall(agent, 'cloud', 'POST', '/v1/resources', { ...request, parameters: { name: domainName() } }, 'same-key');
    expect(other.status).toBe(422);
    const charges = await readJson(await asHuman(agent.human, 'GET', '/v1/charges'));
    expect(charges.data).toHaveLength(1);
  });

  it('declines beyond the mandate’s limit with 402 and a step-up URL; nothing provisioned, nothing charged', async () => {
    const agent = await paidAgent({ spend_limit: { amount: 1500, currency: 'usd', period: 'month' } });
    expect((await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name: domainName() } }, 'a')).status).toBe(201);
    const name = domainName();
    const declined = await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name } }, 'b');
    const problem = await readJson(declined);
    expect(declined.status).toBe(402);
    expect(problem).toMatchObject({
      code: 'spend_limit_exceeded',
      limit: { amount: 1500, currency: 'usd' },
      spent: { amount: 1044, currency: 'usd' },
      requested: { amount: 1044, currency: 'usd' },
      step_up_url: `${urls.orchestrator}/mandates/${agent.mandateId}/approval`,
    });
    const resources = await readJson(await tokenGet(agent, 'cloud', '/v1/resources'));
    expect(resources.data).toHaveLength(1);
    const charges = await readJson(await asHuman(agent.human, 'GET', '/v1/charges'));
    expect(charges.data.filter((ch: Json) => ch.status !== 'voided')).toHaveLength(1);
    // The name was not taken by the refused call.
    expect((await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name } }, 'c')).status).toBe(402);
  });

  it('refuses before any money moves: bad parameters, a changed price, a service outside the mandate, a bad signature', async () => {
    const agent = await paidAgent({ scope: [{ provider: 'cloud', services: ['domain'] }] });
    const bad = await readJson(await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { nome: 'x' } }, 'p1'));
    expect(bad).toMatchObject({ status: 422, code: 'invalid_parameters' });
    expect(bad.errors.length).toBeGreaterThan(0);
    const price = await readJson(await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name: domainName() }, expected_price: { amount: 999, currency: 'usd' } }, 'p2'));
    expect(price).toMatchObject({ status: 409, code: 'price_changed', price: { amount: 1044 } });
    const scope = await readJson(await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'workers-paid', plan: 'paid' }, 'p3'));
    expect(scope).toMatchObject({ status: 403, code: 'insufficient_scope' });
    const url = `${urls.cloud}/v1/resources`;
    const unsigned = await fetch(url, {
      method: 'POST',
      headers: { authorization: `DPoP ${agent.token.cloud}`, dpop: await dpopProof(agent.key, 'POST', url, { accessToken: agent.token.cloud }), 'content-type': 'application/json', 'idempotency-key': 'p4' },
      body: JSON.stringify({ service: 'domain', plan: 'com-1y', parameters: { name: domainName() } }),
    });
    expect(await readJson(unsigned)).toMatchObject({ status: 401, code: 'invalid_signature' });
    const charges = await readJson(await asHuman(agent.human, 'GET', '/v1/charges'));
    expect(charges.data).toEqual([]);
  });

  it('provisions a database asynchronously: 202, then the operation, whose first read alone carries the credentials', async () => {
    const agent = await paidAgent();
    const accepted = await paidCall(agent, 'data', 'POST', '/v1/resources', { service: 'database', plan: 'pro', parameters: { name: 'orders' } }, 'db-1');
    const operation = await readJson(accepted);
    expect(accepted.status, JSON.stringify(operation)).toBe(202);
    expect(operation).toMatchObject({ operation_id: expect.stringMatching(/^op_/), status: 'pending' });
    let read: Json = {};
    for (let i = 0; i < 40 && read.status !== 'succeeded'; i++) {
      read = await readJson(await tokenGet(agent, 'data', `/v1/operations/${operation.operation_id}`));
      if (read.status !== 'succeeded') await sleep(250);
    }
    expect(read.status).toBe('succeeded');
    expect(read.resource.credentials.token).toMatch(/^dbt_/);
    const again = await readJson(await tokenGet(agent, 'data', `/v1/operations/${operation.operation_id}`));
    expect(again.resource).toMatchObject({ credentials: null, credentials_redacted: true });
  });

  it('enforces the catalog’s velocity limit (5 domains a day) before any charge', async () => {
    const agent = await paidAgent({ spend_limit: { amount: 10_000, currency: 'usd', period: 'month' } });
    await asHuman(agent.human, 'POST', '/v1/limits', { json: { amount: 20_000, currency: 'usd' } });
    for (let i = 0; i < 5; i++) {
      const res = await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name: domainName() } }, `v${i}`);
      expect(res.status, JSON.stringify(await readJson(res))).toBe(201);
    }
    const sixth = await readJson(await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name: domainName() } }, 'v5'));
    expect(sixth).toMatchObject({ status: 402, code: 'velocity_limited' });
  });

  it('lets only the human raise a limit: an agent gets 403 human_required', async () => {
    const agent = await paidAgent();
    const byAgent = await asAgent(agent.key, urls.orchestrator, 'POST', '/v1/limits', { amount: 50_000, currency: 'usd' });
    expect(await readJson(byAgent)).toMatchObject({ status: 403, code: 'human_required' });
    const byHuman = await readJson(await asHuman(agent.human, 'POST', '/v1/limits', { json: { amount: 20_000, currency: 'usd' } }));
    expect(byHuman.data[0]).toMatchObject({ scope: 'principal', limit: { amount: 20_000 } });
  });
});

describe('disputes over a real charge', () => {
  it('decides within_scope from the evidence, and the bundle verifies offline with the verifier script', async () => {
    const agent = await paidAgent();
    const created = await readJson(await paidCall(agent, 'cloud', 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name: domainName() } }, 'disputed'));
    let charge: Json = {};
    for (let i = 0; i < 40 && charge.status !== 'captured'; i++) {
      charge = await chargeOf(agent, created.charge_id);
      if (charge.status !== 'captured') await sleep(250);
    }
    expect(charge.receipt).toBe(created.receipt);
    const opened = await asHuman(agent.human, 'POST', '/v1/disputes', { json: { charge_id: created.charge_id, reason: 'I do not recognise this' } });
    const dispute = await readJson(opened);
    expect(opened.status, JSON.stringify(dispute)).toBe(201);
    expect(dispute).toMatchObject({ verdict: 'within_scope', failing_party: null });
    const bundle = await readJson(await asHuman(agent.human, 'GET', new URL(dispute.evidence_url).pathname));

    // Offline: the script reads the file, nothing else. It runs in a network namespace of its own, where no
    // Worker answers (not even on loopback): for the verifier, every role might as well be stopped.
    const dir = mkdtempSync(join(tmpdir(), 'oap-evidence-'));
    writeFileSync(join(dir, 'bundle.json'), JSON.stringify(bundle));
    const probe = spawnSync('unshare', ['-rn', process.execPath, '-e', `fetch(${JSON.stringify(urls.orchestrator)}).then(() => process.exit(0), () => process.exit(7))`], { encoding: 'utf8' });
    expect(probe.status, `the orchestrator must be unreachable from the verifier's namespace: ${probe.stderr}`).toBe(7);
    const run = spawnSync('unshare', ['-rn', process.execPath, join(process.cwd(), 'node_modules/tsx/dist/cli.mjs'), 'agent/verify-evidence.ts', join(dir, 'bundle.json')], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('verdict: within_scope');
    expect(run.stdout).toContain('ok   agent_signed_request');
    // Both parties' trails are in the bundle: the provider's records the provision this charge paid for.
    expect(run.stdout).toContain('ok   provider_trail');
    expect(bundle.audit.provider.events.map((e: Json) => e.action)).toEqual(expect.arrayContaining(['charge.reserve', 'resource.provision']));
    // One byte changed in the agent's signed body: the verifier says so, and the verdict changes.
    bundle.agent_request.body = bundle.agent_request.body.replace('com-1y', 'io-1y');
    writeFileSync(join(dir, 'tampered.json'), JSON.stringify(bundle));
    const tampered = spawnSync(process.execPath, [join(process.cwd(), 'node_modules/tsx/dist/cli.mjs'), 'agent/verify-evidence.ts', join(dir, 'tampered.json')], { encoding: 'utf8' });
    expect(tampered.status).toBe(1);
    expect(tampered.stdout).toContain('FAIL agent_signed_request');
    rmSync(dir, { recursive: true, force: true });
  });
});
