// Disputes (PROTOCOL.md §5): verdicts decided from evidence alone, built
// through the real charge flow, and the adjudicator rerun on tampered bundles.
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it, vi } from 'vitest';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT, type JSONWebKeySet } from 'jose';
import { describe as describeEvidence, verifyEvidence } from '../../agent/verify-evidence';
import { adjudicate, type EvidenceBundle } from '../../workers/lib/adjudicator';
import { auditEventHash, chainAuditEvent, GENESIS_HASH, type AuditEvent } from '../../workers/lib/audit';
import { signJwt } from '../../workers/lib/jws';
import { loadSigningKeys } from '../../workers/lib/signing-keys';
import { newAgentKey } from '../support/agent-keys';
import { asProvider, captureWithReceipt, chargeBody, providerAuditHead, signedAgentRequest, subjectAt, type AuthorizedCharge } from '../support/fake-provider';
import { activeMandate, call, chargeMadeDaysAgo, newPrincipal, type Human } from '../support/orchestrator-client';

const testEnv = env as unknown as TestEnv;
const ledgerOf = (id: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(id));
type Json = Record<string, any>;

type ChargeOptions = {
  /** The receipt as §4 lists it (`valid`), none at all, or with claims changed. */
  receipt?: 'valid' | 'none' | Record<string, unknown>;
  service?: string;
  plan?: string;
  amount?: number;
  /** Runs after the human approved and before the provider asks to charge. */
  beforeCharge?: (principalId: string, mandateId: string) => Promise<void>;
};

/** A charge authorized through the real charges API and not (yet) captured. */
async function authorizedCharge({ service = 'domain', plan = 'com-1y', amount = 1044, beforeCharge }: Omit<ChargeOptions, 'receipt'> = {}) {
  const human = await newPrincipal();
  const { agent, mandate_id } = await activeMandate(human);
  await beforeCharge?.(human.principal_id, mandate_id);
  const sub = await subjectAt(agent, mandate_id, 'cloud');
  const authorizing = await asProvider('cloud', 'POST', '/v1/charges', await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service, plan, amount }));
  const authorized = (await authorizing.json()) as Json;
  expect(authorizing.status, JSON.stringify(authorized)).toBe(201);
  return { human, agent, mandate_id, amount, authorized: authorized as AuthorizedCharge, charge_id: authorized.charge_id as string };
}

/** A captured charge through the real charges API, its receipt signed by the provider (unless `receipt` says otherwise). */
async function capturedCharge({ receipt = 'valid', ...options }: ChargeOptions = {}) {
  const { human, agent, mandate_id, amount, authorized, charge_id } = await authorizedCharge(options);
  const captured = await captureWithReceipt('cloud', authorized, { agent_id: agent.agent_id, mandate_id, amount, resource_id: 'res_disputed' }, receipt);
  expect(captured.status).toBe(200);
  return { human, agent, mandate_id, charge_id };
}

/**
 * A misbehaving orchestrator: after the human approved, it re-signs the
 * mandate with broader terms under the same display_hash, and its ledger
 * enforces those. The charge then goes through the real flow; the adjudicator
 * must hold the signed terms to what the human was shown.
 */
function orchestratorResigns(change: (constraints: Json[]) => void) {
  return async (principalId: string, mandateId: string) => {
    await runInDurableObject(ledgerOf(principalId), async (_, state) => {
      const row = state.storage.sql.exec<{ mandate_jws: string }>('SELECT mandate_jws FROM mandates WHERE id = ?', mandateId).one();
      const claims = decodeJwt(row.mandate_jws) as Json;
      change(claims.constraints);
      const resigned = await signJwt(await loadSigningKeys(testEnv.SIGNING_KEYS), 'oap-mandate+jwt', claims);
      state.storage.sql.exec('UPDATE mandates SET mandate_jws = ? WHERE id = ?', resigned, mandateId);
    });
  };
}

async function dispute(human: Human, chargeId: string) {
  const res = await call('/v1/disputes', { method: 'POST', headers: human.headers(), body: JSON.stringify({ charge_id: chargeId, reason: 'I did not ask for this' }) });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Json };
}

/** The evidence bundle of a dispute, as its principal reads it. */
async function evidenceOf(human: Human, disputed: { body: Json }) {
  return (await (await call(new URL(disputed.body.evidence_url).pathname, { headers: { cookie: human.cookie } })).json()) as EvidenceBundle;
}

/** A captured charge, disputed at once, with its evidence bundle. */
async function disputedBundle() {
  const { human, charge_id } = await capturedCharge();
  const res = await dispute(human, charge_id);
  expect(res.status).toBe(201);
  return { human, charge_id, bundle: await evidenceOf(human, res) };
}

/** The principal's trail as it reads it, less the deliveries to providers that run in the background. */
async function trailOf(human: Human) {
  const text = await (await call('/v1/audit', { headers: { cookie: human.cookie } })).text();
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Json)
    .filter((e) => e.action !== 'provider_event.deliver');
}

/** What a dispute changes in the principal's ledger: disputes, the charge, the money, notifications, webhooks, the trail. */
async function stateOf(human: Human, chargeId: string) {
  const ledger = ledgerOf(human.principal_id);
  const rows = await runInDurableObject(ledger, (_, state) => ({
    notifications: state.storage.sql.exec('SELECT id FROM notifications').toArray(),
    webhooks: state.storage.sql.exec('SELECT * FROM webhook_deliveries').toArray(),
  }));
  return { disputes: await ledger.listDisputes(), charge: await ledger.getCharge(chargeId), spent: await ledger.spentThisPeriod(), ...rows, trail: await trailOf(human) };
}

/** The one event a refused dispute leaves: in the caller's own chain, naming the code it was refused with. */
const refusedDispute = (human: Human, chargeId: string, code: string) =>
  expect.objectContaining({ actor: { type: 'principal', id: human.principal_id }, action: 'dispute.open', outcome: 'refused', reason: code, related: [chargeId] });

/** `attempt` is refused with `status` and `code`, audited once in the caller's chain, and changes nothing else there. */
async function expectRefusedAndAudited(caller: Human, chargeId: string, attempt: () => Promise<{ status: number; body: Json }>, status: number, code: string) {
  const before = await stateOf(caller, chargeId);
  const res = await attempt();
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.code).toBe(code);
  const after = await stateOf(caller, chargeId);
  expect(after.trail.slice(before.trail.length)).toEqual([refusedDispute(caller, chargeId, code)]);
  expect({ ...after, trail: after.trail.slice(0, before.trail.length) }).toEqual(before);
}

describe('dispute verdicts', () => {
  it('within_scope: every check passes, the charge stands, the evidence reruns to the same verdict', async () => {
    const { human, charge_id } = await capturedCharge();
    const res = await dispute(human, charge_id);
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({ verdict: 'within_scope', failing_party: null, adjudicator: 'oap-adjudicator/7' });
    expect(res.body.findings.map((f: Json) => `${f.check}:${f.result}`)).toEqual([
      'mandate_signed:pass',
      'mandate_active:pass',
      'provider_and_service_in_scope:pass',
      'amount_within_limits:pass',
      'agent_signed_request:pass',
      'human_approved_display:pass',
      'provider_delivered:pass',
      'provider_checks:pass',
      'audit_trail:pass',
      // The stand-in providers of this project keep no trail: the real one is checked end to end.
      'provider_trail:missing',
    ]);
    expect(((await (await call(`/v1/charges/${charge_id}`, { headers: { cookie: human.cookie } })).json()) as Json).status).toBe('captured');
    const bundle = await evidenceOf(human, res);
    expect(bundle.format).toBe('oap-evidence/2');
    expect((await adjudicate(bundle)).verdict).toBe('within_scope');
    expect(await adjudicate(bundle)).toEqual(await adjudicate(bundle));
  });

  it('insufficient_evidence when the provider produced no receipt: refunded, the spend freed, the provider told', async () => {
    const { human, charge_id } = await capturedCharge({ receipt: 'none' });
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(1044);
    const res = await dispute(human, charge_id);
    expect(res.body).toMatchObject({ verdict: 'insufficient_evidence', failing_party: 'provider' });
    expect(res.body.findings).toContainEqual(expect.objectContaining({ check: 'provider_delivered', result: 'missing' }));
    expect(((await (await call(`/v1/charges/${charge_id}`, { headers: { cookie: human.cookie } })).json()) as Json).status).toBe('refunded');
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(0);
    const notes = (await (await call('/v1/notifications', { headers: { cookie: human.cookie } })).json()) as Json;
    expect(notes.data).toContainEqual(expect.objectContaining({ type: 'dispute.decided', data: expect.objectContaining({ verdict: 'insufficient_evidence', charge_id }) }));
  });

  it('outside_scope with the provider named when its own receipt shows it ignored the mandate’s revocation', async () => {
    const { human, charge_id } = await capturedCharge({ receipt: { mandate_status_at_decision: 'revoked', constraint_results: [{ type: 'mandate_active', pass: false }] } });
    const res = await dispute(human, charge_id);
    expect(res.body).toMatchObject({ verdict: 'outside_scope', failing_party: 'provider' });
    expect(res.body.findings).toContainEqual(expect.objectContaining({ check: 'provider_checks', result: 'fail' }));
  });

  it('outside_scope with the orchestrator named for an amount above the signed max_per_charge', async () => {
    // The human approved at most $20.00 per charge; the re-signed mandate let $46.00 through.
    const { human, charge_id } = await capturedCharge({ plan: 'io-1y', amount: 4600, beforeCharge: orchestratorResigns((c) => (c.find((x) => x.type === 'max_per_charge')!.limit = { amount: 10_000, currency: 'usd' })) });
    const res = await dispute(human, charge_id);
    expect(res.body).toMatchObject({ verdict: 'outside_scope', failing_party: 'orchestrator' });
    expect(res.body.findings).toContainEqual(expect.objectContaining({ check: 'amount_within_limits', result: 'fail' }));
    expect(res.body.findings).toContainEqual(expect.objectContaining({ check: 'human_approved_display', result: 'fail', evidence: expect.stringContaining('exceed what was shown') }));
    expect(((await (await call(`/v1/charges/${charge_id}`, { headers: { cookie: human.cookie } })).json()) as Json).status).toBe('refunded');
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(0);
    // The provider's capture, retried after the refund, is told the charge as it is: captured once, then refunded; not voided.
    const retried = await asProvider('cloud', 'POST', `/v1/charges/${charge_id}/capture`, {});
    expect(retried.status).toBe(200);
    expect(((await retried.json()) as Json).status).toBe('refunded');
    expect(await ledgerOf(human.principal_id).spentThisPeriod()).toBe(0);
  });

  it('outside_scope with the orchestrator named for a service the human did not approve', async () => {
    const { human, charge_id } = await capturedCharge({ service: 'workers-paid', plan: 'paid', amount: 500, beforeCharge: orchestratorResigns((c) => c.find((x) => x.type === 'provider_services')!.services.push('workers-paid')) });
    const res = await dispute(human, charge_id);
    expect(res.body).toMatchObject({ verdict: 'outside_scope', failing_party: 'orchestrator' });
    expect(res.body.findings).toContainEqual(expect.objectContaining({ check: 'provider_and_service_in_scope', result: 'fail' }));
    expect(res.body.findings).toContainEqual(expect.objectContaining({ check: 'human_approved_display', result: 'fail' }));
  });

  it('outside_scope with the orchestrator named when the agent’s signature does not verify with the key on record', async () => {
    // The orchestrator's record of the agent's key no longer matches the key that signed (a key swapped without history).
    const { human, charge_id, agent } = await capturedCharge();
    const other = await newAgentKey();
    await runInDurableObject(ledgerOf(human.principal_id), (_, state) => void state.storage.sql.exec('UPDATE agents SET public_jwk = ? WHERE id = ?', JSON.stringify(other.jwk), agent.agent_id));
    const res = await dispute(human, charge_id);
    expect(res.body).toMatchObject({ verdict: 'outside_scope', failing_party: 'orchestrator' });
    expect(res.body.findings).toContainEqual(expect.objectContaining({ check: 'agent_signed_request', result: 'fail' }));
  });

  it('refuses a second dispute of one charge, an uncaptured charge, and another principal’s charge', async () => {
    const { human, charge_id } = await capturedCharge();
    expect((await dispute(human, charge_id)).status).toBe(201);
    expect((await dispute(human, charge_id)).status).toBe(409);
    const stranger = await newPrincipal();
    expect((await dispute(stranger, charge_id)).status).toBe(404);
    expect((await call('/v1/disputes', { method: 'POST', headers: { cookie: human.cookie, 'content-type': 'application/json' }, body: JSON.stringify({ charge_id, reason: 'x' }) })).status).toBe(403);
  });
});

describe('a renewal disputed', () => {
  it('is insufficient_evidence and refunded: nothing the agent signed bounds when or how often a provider renews', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    const sub = await subjectAt(agent, mandate_id, 'cloud');
    const signed = { ...(await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount: 1044 })), resource_ref: 'res_renewed' };
    const charged = async (body: Json) => {
      const res = await asProvider('cloud', 'POST', '/v1/charges', body);
      const authorized = (await res.json()) as AuthorizedCharge;
      expect(res.status, JSON.stringify(authorized)).toBe(201);
      expect((await captureWithReceipt('cloud', authorized, { agent_id: agent.agent_id, mandate_id, amount: 1044, resource_id: 'res_renewed' })).status).toBe(200);
      return authorized.charge_id;
    };
    const created = await charged(signed);
    await chargeMadeDaysAgo(human.principal_id, created, 365);
    const { agent_request: _signed, ...unsigned } = signed;
    const renewed = await charged({ ...unsigned, idempotency_key: `renewal-${crypto.randomUUID()}`, renewal_of: created });
    const disputed = await dispute(human, renewed);
    expect(disputed.body).toMatchObject({ verdict: 'insufficient_evidence', failing_party: 'orchestrator' });
    expect(disputed.body.findings).toContainEqual(expect.objectContaining({ check: 'agent_signed_request', result: 'missing' }));
    expect((await ledgerOf(human.principal_id).getCharge(renewed))!.status).toBe('refunded');
  });
});

describe('refused disputes (§4: every refusal is an event)', () => {
  it('a second dispute of one charge: 409, audited in the principal’s chain, the first verdict and the money untouched', async () => {
    const { human, charge_id } = await capturedCharge();
    expect((await dispute(human, charge_id)).body.verdict).toBe('within_scope');
    await expectRefusedAndAudited(human, charge_id, () => dispute(human, charge_id), 409, 'invalid_request');
  });

  it('an uncaptured charge, refused inside the ledger after adjudication: 409, audited, nothing stored or refunded', async () => {
    const { human, charge_id } = await authorizedCharge();
    await expectRefusedAndAudited(human, charge_id, () => dispute(human, charge_id), 409, 'invalid_request');
    expect((await ledgerOf(human.principal_id).getCharge(charge_id))!.status).toBe('pending');
  });

  it('another principal’s charge: 404 audited in the caller’s own chain; the owner’s ledger learns nothing', async () => {
    const { human, charge_id } = await capturedCharge();
    const stranger = await newPrincipal();
    const owner = await stateOf(human, charge_id);
    await expectRefusedAndAudited(stranger, charge_id, () => dispute(stranger, charge_id), 404, 'not_found');
    expect(await stateOf(human, charge_id)).toEqual(owner);
  });

  it('an unknown charge: 404, audited', async () => {
    const human = await newPrincipal();
    await expectRefusedAndAudited(human, 'chg_nonexistent', () => dispute(human, 'chg_nonexistent'), 404, 'not_found');
  });

  it('two disputes of one charge at once: one verdict, one refund, the other refused and audited', async () => {
    const { human, charge_id } = await capturedCharge({ receipt: 'none' });
    const results = await Promise.all([dispute(human, charge_id), dispute(human, charge_id)]);
    expect(results.map((r) => r.status).sort()).toEqual([201, 409]);
    expect(results.find((r) => r.status === 409)!.body.code).toBe('invalid_request');
    const after = await stateOf(human, charge_id);
    expect(after.disputes).toHaveLength(1);
    expect(after.charge!.status).toBe('refunded');
    expect(after.spent).toBe(0);
    expect(after.trail.filter((e) => e.action === 'charge.refund')).toHaveLength(1);
    expect(after.trail.filter((e) => e.action === 'dispute.open')).toEqual(expect.arrayContaining([expect.objectContaining({ outcome: 'succeeded' }), refusedDispute(human, charge_id, 'invalid_request')]));
  });

  it('the ledger itself decides one dispute per charge, whatever passed the route’s check: two records at once, one stands', async () => {
    const { human, charge_id } = await capturedCharge({ receipt: 'none' });
    const ledger = ledgerOf(human.principal_id);
    const record = (id: string) => ({ id, charge_id, reason: 'race', verdict: 'insufficient_evidence' as const, failing_party: 'provider' as const, findings: '[]', adjudicator: 'test', evidence: '{}' });
    const outcomes = await Promise.all([ledger.recordDispute(human.principal_id, record('dsp_race_a')), ledger.recordDispute(human.principal_id, record('dsp_race_b'))]);
    expect(outcomes.map((o) => o.ok).sort()).toEqual([false, true]);
    expect(outcomes.find((o) => !o.ok)).toMatchObject({ code: 'invalid_request' });
    const after = await stateOf(human, charge_id);
    expect(after.disputes).toHaveLength(1);
    expect(after.trail.filter((e) => e.action === 'charge.refund')).toHaveLength(1);
  });
});

describe('when the provider’s published keys cannot be fetched', () => {
  const provider = (env as unknown as { PROVIDER_CLOUD: Fetcher }).PROVIDER_CLOUD;
  const isJwks = (input: RequestInfo | URL, init?: RequestInit) => new URL(new Request(input, init).url).pathname === '/.well-known/jwks.json';
  const failures: [string, () => Promise<Response>][] = [
    ['the fetch fails', () => Promise.reject(new TypeError('network connection lost'))],
    ['the provider answers 503', async () => new Response('unavailable', { status: 503 })],
    ['the provider answers 404 with a JWKS-shaped body', async () => Response.json({ keys: [] }, { status: 404 })],
    ['the answer is not JSON', async () => new Response('<html>maintenance</html>', { status: 200, headers: { 'content-type': 'text/html' } })],
    ['the answer is JSON but not a JWKS', async () => Response.json({ keys: 'none' })],
  ];

  it.each(failures)('%s: 503 to retry later, no verdict against the provider, nothing stored; the retry decides', async (_, answer) => {
    const { human, charge_id } = await capturedCharge();
    const before = await stateOf(human, charge_id);
    const original = provider.fetch.bind(provider);
    const spy = vi.spyOn(provider, 'fetch').mockImplementation((input, init) => (isJwks(input as RequestInfo, init as RequestInit) ? answer() : original(input as RequestInfo, init as RequestInit)));
    try {
      const res = await dispute(human, charge_id);
      expect(res.status, JSON.stringify(res.body)).toBe(503);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(res.headers.get('retry-after')).toMatch(/^\d+$/);
      expect(res.body.code).toBe('internal_error');
    } finally {
      spy.mockRestore();
    }
    expect(await stateOf(human, charge_id)).toEqual(before);
    const retried = await dispute(human, charge_id);
    expect(retried.status).toBe(201);
    expect(retried.body).toMatchObject({ verdict: 'within_scope', failing_party: null });
  });
});

describe('the adjudicator on tampered evidence', () => {
  const bundleOf = async () => (await disputedBundle()).bundle;
  const failing = async (bundle: EvidenceBundle) => (await adjudicate(bundle)).findings.filter((f) => f.result !== 'pass').map((f) => f.check);

  it('holds the charge to the price the agent signed: more than it is against the orchestrator, which let it through', async () => {
    const { human, agent, charge_id } = await capturedCharge();
    const disputed = await dispute(human, charge_id);
    const bundle = await evidenceOf(human, disputed);
    expect((await failing(bundle)).filter((c) => c !== 'provider_trail')).toEqual([]);
    // The same request, signed by the agent's own key, at a lower price than was charged.
    const request = bundle.agent_request!;
    const cheaper = JSON.stringify({ ...JSON.parse(request.body), expected_price: { amount: 999, currency: 'usd' } });
    const overcharged = structuredClone(bundle);
    overcharged.agent_request = await signedAgentRequest(agent.key, request.method, request.target_uri, cheaper);
    expect((await failing(overcharged)).filter((c) => c !== 'provider_trail')).toEqual(['agent_signed_request']);
    expect((await adjudicate(overcharged)).findings.find((f) => f.check === 'agent_signed_request')!.evidence).toContain('at 999 usd, charged 1044 usd');
    // A plan change names the new plan's full price, and is charged no more; one that names none backs no charge.
    const asPlanChange = async (body: object) => {
      const text = JSON.stringify(body);
      const target = request.target_uri.replace(/\/v1\/resources$/, '/v1/resources/res_disputed');
      const changed = structuredClone(bundle);
      changed.charge.resource_ref = 'res_disputed';
      changed.agent_request = await signedAgentRequest(agent.key, 'PATCH', target, text);
      return (await failing(changed)).filter((c) => c !== 'provider_trail');
    };
    expect(await asPlanChange({ plan: 'com-1y', expected_price: { amount: 2000, currency: 'usd' } })).toEqual([]);
    expect(await asPlanChange({ plan: 'com-1y', expected_price: { amount: 1000, currency: 'usd' } })).toEqual(['agent_signed_request']);
    expect(await asPlanChange({ plan: 'com-1y' })).toEqual(['agent_signed_request']);
  });

  it('holds the signed request to where it went: a creation at the charging provider, a plan change of the charged resource', async () => {
    const { human, agent, charge_id } = await capturedCharge();
    const bundle = await evidenceOf(human, await dispute(human, charge_id));
    const request = bundle.agent_request!;
    expect(bundle.provider.url).toBe(new URL(request.target_uri).origin);
    const check = async (b: EvidenceBundle) => (await adjudicate(b)).findings.find((f) => f.check === 'agent_signed_request')!;
    const resignedAs = async (method: string, target: string, body = request.body, edit: (b: EvidenceBundle) => void = () => {}) => {
      const changed = structuredClone(bundle);
      changed.agent_request = await signedAgentRequest(agent.key, method, target, body);
      edit(changed);
      return check(changed);
    };
    expect(await check(bundle)).toMatchObject({ result: 'pass', evidence: expect.stringContaining(`POST ${request.target_uri}`) });
    // The very body the agent signed, sent to another provider: it backs no charge here.
    expect(await resignedAs('POST', 'https://elsewhere.example/v1/resources')).toMatchObject({ result: 'fail', evidence: expect.stringContaining('not a creation at this provider') });
    expect(await resignedAs('DELETE', `${request.target_uri}/res_disputed`)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('neither a creation nor a plan change') });
    // A creation names the service it is charged for.
    const { service: _service, ...unnamed } = JSON.parse(request.body) as Record<string, unknown>;
    expect(await resignedAs('POST', request.target_uri, JSON.stringify(unnamed))).toMatchObject({ result: 'fail' });
    // A plan change is of the charged resource; a bundle from before the resource was recorded accepts any one of the provider's.
    const change = JSON.stringify({ plan: 'com-1y', expected_price: { amount: 2000, currency: 'usd' } });
    const charged = (b: EvidenceBundle) => void (b.charge.resource_ref = 'res_charged');
    expect(await resignedAs('PATCH', `${request.target_uri}/res_charged`, change, charged)).toMatchObject({ result: 'pass' });
    expect(await resignedAs('PATCH', `${request.target_uri}/res_other`, change, charged)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('of another resource') });
    const older = (b: EvidenceBundle) => {
      delete b.charge.resource_ref;
      delete b.provider.url;
    };
    expect(await resignedAs('PATCH', `${request.target_uri}/res_other`, change, older)).toMatchObject({ result: 'pass' });
    expect(await resignedAs('PATCH', `${request.target_uri}/res_other/more`, change, older)).toMatchObject({ result: 'fail' });
  });

  it('a provider the orchestrator no longer knows (no issuer, no address): insufficient_evidence against the orchestrator; one it knows with no keys is blamed', async () => {
    const bundle = await bundleOf();
    expect((await adjudicate(bundle)).verdict).toBe('within_scope');
    const forgotten = structuredClone(bundle);
    forgotten.provider = { id: bundle.provider.id, issuer: '', url: '', jwks: { keys: [] } };
    const result = await adjudicate(forgotten);
    expect(result).toMatchObject({ verdict: 'insufficient_evidence', failing_party: 'orchestrator' });
    expect(result.findings.filter((f) => f.result !== 'pass' && f.check !== 'provider_trail').map((f) => [f.check, f.result])).toEqual([
      ['agent_signed_request', 'missing'],
      ['provider_keys', 'missing'],
    ]);
    // A provider the orchestrator knows that publishes no keys fails its own receipt: it cannot shed the blame so.
    const keyless = structuredClone(bundle);
    keyless.provider.jwks = { keys: [] };
    expect(await adjudicate(keyless)).toMatchObject({ verdict: 'outside_scope', failing_party: 'provider' });
  });

  it('names what broke: an event, the display, the agent’s signature, the mandate’s window, a receipt of another charge', async () => {
    const bundle = await bundleOf();
    const failingIgnoringProvider = async (b: EvidenceBundle) => (await failing(b)).filter((c) => c !== 'provider_trail');
    expect(await failingIgnoringProvider(bundle)).toEqual([]);

    const event = structuredClone(bundle);
    event.audit.orchestrator.events[0]!.reason = 'edited';
    expect(await failingIgnoringProvider(event)).toEqual(['audit_trail']);

    const display = structuredClone(bundle);
    display.mandate.display_document = display.mandate.display_document!.replace('"share_email":false', '"share_email":true');
    expect(await failingIgnoringProvider(display)).toEqual(['human_approved_display']);

    const signed = structuredClone(bundle);
    signed.agent_request!.body = signed.agent_request!.body.replace('com-1y', 'io-1y');
    expect(await failingIgnoringProvider(signed)).toEqual(['agent_signed_request']);

    const revoked = structuredClone(bundle);
    revoked.mandate.revoked_at = new Date(Date.parse(bundle.charge.authorized_at) - 1000).toISOString();
    const verdict = await adjudicate(revoked);
    expect(verdict).toMatchObject({ verdict: 'outside_scope', failing_party: 'orchestrator' });
    expect(verdict.findings.find((f) => f.check === 'mandate_active')!.result).toBe('fail');

    const other = await bundleOf();
    const swapped = structuredClone(bundle);
    swapped.charge.receipt = other.charge.receipt;
    expect(await failingIgnoringProvider(swapped)).toContain('provider_delivered');

    const lastDropped = structuredClone(bundle);
    lastDropped.audit.orchestrator.events = lastDropped.audit.orchestrator.events.filter((e) => e.action !== 'charge.capture');
    expect(await failingIgnoringProvider(lastDropped)).toEqual(['audit_trail']);

    const reordered = structuredClone(bundle);
    const evs = reordered.audit.orchestrator.events;
    [evs[0], evs[1]] = [evs[1]!, evs[0]!];
    expect((await adjudicate(reordered)).findings.find((f) => f.check === 'audit_trail')).toMatchObject({ result: 'fail', evidence: expect.stringContaining('order') });

    // Without the orchestrator's keys, its signature over the mandate cannot be checked.
    const unsigned = structuredClone(bundle);
    unsigned.orchestrator.jwks = { keys: [] };
    expect(await failingIgnoringProvider(unsigned)).toContain('mandate_signed');
  });
});

describe('chain proofs in the evidence (§5): the principal’s trail through a head the orchestrator signed', () => {
  const bundleOf = disputedBundle;
  const trailFinding = async (bundle: EvidenceBundle) => (await adjudicate(bundle)).findings.find((f) => f.check === 'audit_trail')!;
  /** What an attacker holding no key can do: rewrite events and recompute every hash after them. */
  const rechain = (events: AuditEvent[], from: number) => {
    for (let i = from; i < events.length; i++) {
      const { hash: _, ...rest } = events[i]!;
      if (i > 0) rest.prev_hash = events[i - 1]!.hash;
      events[i] = { ...rest, hash: auditEventHash(rest) };
    }
  };

  it('the bundle carries, for each event about the charge, the run from it through the first head signed after it, signed now when none was', async () => {
    const { human, charge_id, bundle } = await bundleOf();
    const { events, heads = [], signed_head } = bundle.audit.orchestrator;
    expect(heads.length).toBeGreaterThan(0);
    expect(signed_head).toEqual(heads.at(-1));
    expect(events[0]).toMatchObject({ action: 'charge.authorize', target: charge_id });
    const signedHeads = await ledgerOf(human.principal_id).signedHeads(50);
    for (const head of heads) {
      expect(decodeJwt(head.jws)).toMatchObject({ sub: human.principal_id, seq: head.seq, hash: head.hash });
      // Each run ends at its head, linked event by event, with nothing missing in between.
      const end = events.findIndex((e) => e.seq === head.seq);
      expect(events[end]).toMatchObject({ seq: head.seq, hash: head.hash });
    }
    for (const [i, e] of events.entries()) if (i > 0 && e.seq === events[i - 1]!.seq + 1) expect(e.prev_hash).toBe(events[i - 1]!.hash);
    // The run of each event about the charge stops at the first head at or after it, however the trail grew since.
    for (const about of events.filter((e) => e.target === charge_id || e.related.includes(charge_id))) {
      const first = signedHeads.filter((h) => h.seq >= about.seq).at(-1)!;
      expect(heads.map((h) => h.seq)).toContain(first.seq);
    }
    expect(await trailFinding(bundle)).toMatchObject({ result: 'pass', evidence: expect.stringContaining('each chained to a head the orchestrator signed') });
  });

  it('attack: the capture’s amount and actor edited and its hash recomputed (and every later one): audit_trail fails, the verdict changes', async () => {
    const { bundle } = await bundleOf();
    const at = bundle.audit.orchestrator.events.findIndex((e) => e.action === 'charge.capture');
    for (const rechainAll of [false, true]) {
      const edited = structuredClone(bundle);
      const events = edited.audit.orchestrator.events;
      events[at] = { ...events[at]!, amount: { amount: 1, currency: 'usd' }, actor: { type: 'system', id: 'sys' } };
      rechain(events, at);
      if (!rechainAll) events.splice(at + 1, events.length, ...bundle.audit.orchestrator.events.slice(at + 1));
      const result = await adjudicate(edited);
      expect(result.findings.find((f) => f.check === 'audit_trail'), `rechained all: ${rechainAll}`).toMatchObject({ result: 'fail' });
      expect(result).toMatchObject({ verdict: 'outside_scope', failing_party: 'orchestrator' });
    }
  });

  it('carries short runs, not the whole stretch between the authorization and a capture long after it', async () => {
    const { human, agent, mandate_id, amount, authorized, charge_id } = await authorizedCharge();
    const ledger = ledgerOf(human.principal_id);
    await ledger.signHeadNow();
    // Much else happens in the principal's trail before the capture, its heads signed as the alarm would.
    for (let i = 0; i < 30; i++) await ledger.recordRefusal(human.principal_id, { actor: { type: 'principal', id: human.principal_id }, action: 'dispute.open', reason: 'not_found', related: [`chg_elsewhere_${i}`] });
    await ledger.signHeadNow();
    expect((await captureWithReceipt('cloud', authorized, { agent_id: agent.agent_id, mandate_id, amount, resource_id: 'res_disputed' }, 'valid')).status).toBe(200);
    const res = await dispute(human, charge_id);
    const bundle = await evidenceOf(human, res);
    const { events, heads = [] } = bundle.audit.orchestrator;
    expect(heads).toHaveLength(2);
    expect(events.filter((e) => e.related.some((r) => r.startsWith('chg_elsewhere_')))).toHaveLength(0);
    expect(res.body.verdict).toBe('within_scope');
    expect(await trailFinding(bundle)).toMatchObject({ result: 'pass', evidence: expect.stringContaining('in 2 runs') });
  });

  it('attack: one event removed from inside the segment (not the charge’s own): the chain has a gap', async () => {
    const { human, agent, mandate_id, amount, authorized, charge_id } = await authorizedCharge();
    // Something else in the principal's trail between the authorization and the capture.
    const ledger = ledgerOf(human.principal_id);
    await ledger.recordRefusal(human.principal_id, { actor: { type: 'principal', id: human.principal_id }, action: 'dispute.open', reason: 'not_found', related: ['chg_elsewhere'] });
    await ledger.signHeadNow();
    expect((await captureWithReceipt('cloud', authorized, { agent_id: agent.agent_id, mandate_id, amount, resource_id: 'res_disputed' }, 'valid')).status).toBe(200);
    const res = await dispute(human, charge_id);
    const bundle = await evidenceOf(human, res);
    const events = bundle.audit.orchestrator.events;
    const middle = events.findIndex((e, i) => i > 0 && i < events.length - 1 && e.target !== charge_id && !e.related.includes(charge_id));
    expect(middle, JSON.stringify(events.map((e) => e.action))).toBeGreaterThan(0);
    const removed = structuredClone(bundle);
    removed.audit.orchestrator.events.splice(middle, 1);
    expect(await trailFinding(removed)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('does not end at a signed head') });
    // Renumbered and rechained to hide the gap: the head no longer matches.
    const hidden = structuredClone(removed);
    hidden.audit.orchestrator.events.forEach((e, i) => (e.seq = events[0]!.seq + i));
    rechain(hidden.audit.orchestrator.events, middle);
    expect(await trailFinding(hidden)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('does not end at a signed head') });
  });

  it('attack: a segment that does not end at the signed head (tail cut, or the head of another point): fails', async () => {
    const { bundle } = await bundleOf();
    const cut = structuredClone(bundle);
    cut.audit.orchestrator.events.pop();
    expect(await trailFinding(cut)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('does not end at a signed head') });
    const { bundle: other } = await bundleOf();
    const foreignHead = structuredClone(bundle);
    foreignHead.audit.orchestrator.heads = other.audit.orchestrator.heads;
    expect(await trailFinding(foreignHead)).toMatchObject({ result: 'fail' });
    const noHead = structuredClone(bundle);
    noHead.audit.orchestrator.heads = [];
    expect(await adjudicate(noHead)).toMatchObject({ verdict: 'insufficient_evidence', failing_party: 'orchestrator' });
  });

  it('a bundle in format 1 (the charge’s events only, no chain proof) is still read, but its trail proves nothing: relabeling a bundle gains nothing', async () => {
    const { charge_id, bundle } = await bundleOf();
    const old = structuredClone(bundle) as unknown as Json;
    old.format = 'oap-evidence/1';
    old.audit.orchestrator = { events: bundle.audit.orchestrator.events.filter((e) => e.target === charge_id || e.related.includes(charge_id)), signed_head: null };
    const result = await verifyEvidence(old as EvidenceBundle);
    expect(result).toMatchObject({ format: 'oap-evidence/1', verdict: 'insufficient_evidence' });
    expect(result.findings.find((f) => f.check === 'audit_trail')).toMatchObject({ result: 'missing', evidence: expect.stringContaining('no chain proof') });
    expect(describeEvidence(old as EvidenceBundle, result)).toContain('format oap-evidence/1 (no chain proof');
  });
});

describe('pinned keys: the verifier trusts the parties’ published keys, not the bundle’s', () => {
  const orchestratorJwks = async () => (await loadSigningKeys(testEnv.SIGNING_KEYS)).publicJwks as JSONWebKeySet;
  const providerJwks = async () => (await (await asProviderJwks()).json()) as JSONWebKeySet;
  const asProviderJwks = () => (env as unknown as { PROVIDER_CLOUD: Fetcher }).PROVIDER_CLOUD.fetch('http://127.0.0.1:8788/.well-known/jwks.json');

  const bundleOf = async () => (await disputedBundle()).bundle;

  it('an honest bundle passes with both parties’ keys pinned, and names the pinned thumbprints', async () => {
    const bundle = await bundleOf();
    const result = await verifyEvidence(bundle, { orchestrator: await orchestratorJwks(), provider: await providerJwks() });
    expect(result.verdict).toBe('within_scope');
    expect(result.findings.filter((f) => f.check.endsWith('_keys_pinned')).map((f) => `${f.check}:${f.result}`)).toEqual(['orchestrator_keys_pinned:pass', 'provider_keys_pinned:pass']);
    const real = await calculateJwkThumbprint((await orchestratorJwks()).keys[0]!);
    expect(result.keys).toContainEqual({ party: 'orchestrator', thumbprint: real, used_for: ['mandate_jws', 'audit head'], pinned: true });
    expect(describeEvidence(bundle, result)).toMatch(new RegExp(`orchestrator +${real}  pinned`));
  });

  it('attack: the mandate and the head re-signed with another key and the JWKS swapped: passes alone but prints the foreign thumbprint; fails with the real keys pinned', async () => {
    const bundle = await bundleOf();
    const { publicKey, privateKey } = await generateKeyPair('Ed25519', { extractable: true });
    const foreign = { ...(await exportJWK(publicKey)), kid: 'attacker', use: 'sig' };
    const resign = (jws: string, typ: string) => new SignJWT(decodeJwt(jws)).setProtectedHeader({ alg: 'EdDSA', typ, kid: 'attacker' }).sign(privateKey);
    const forged = structuredClone(bundle);
    // Broader terms the human never approved, signed by the attacker.
    const claims = decodeJwt(forged.mandate.mandate_jws!) as Json;
    claims.note = 'forged';
    forged.mandate.mandate_jws = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', typ: 'oap-mandate+jwt', kid: 'attacker' }).sign(privateKey);
    for (const head of forged.audit.orchestrator.heads!) head.jws = await resign(head.jws, 'oap-audit-head+jwt');
    forged.orchestrator.jwks = { keys: [foreign] };
    const thumbprint = await calculateJwkThumbprint(foreign);

    const alone = await verifyEvidence(forged);
    expect(alone.verdict).toBe('within_scope');
    expect(describeEvidence(forged, alone)).toMatch(new RegExp(`orchestrator +${thumbprint}  not pinned: taken from the bundle`));

    const pinned = await verifyEvidence(forged, { orchestrator: await orchestratorJwks() });
    expect(pinned).toMatchObject({ verdict: 'outside_scope', failing_party: 'orchestrator' });
    expect(pinned.findings.find((f) => f.check === 'orchestrator_keys_pinned')).toMatchObject({ result: 'fail', evidence: expect.stringContaining(thumbprint) });
    expect(describeEvidence(forged, pinned)).toMatch(new RegExp(`orchestrator +${thumbprint}  NOT PINNED`));
  });
});

describe('the human’s pages', () => {
  it('list charges in the dashboard, open a dispute from one with a form, and show the verdict in plain words', async () => {
    const { human, charge_id } = await capturedCharge();
    const charges = await call('/dashboard/charges', { headers: { cookie: human.cookie } });
    expect(charges.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await charges.text();
    expect(html).toContain(charge_id);
    expect(html).toContain('$10.44');
    expect(html).toContain('captured');
    expect(html).toContain(`<label for="reason-${charge_id}">`);

    const form = new URLSearchParams({ csrf_token: human.csrf, charge_id, reason: 'Not mine' });
    const posted = await call('/v1/disputes', { method: 'POST', headers: { cookie: human.cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(), redirect: 'manual' });
    expect(posted.status).toBe(303);
    const location = posted.headers.get('location')!;
    expect(location).toMatch(/^\/dashboard\/disputes\/dsp_/);
    const verdict = await (await call(location, { headers: { cookie: human.cookie } })).text();
    expect(verdict).toContain('The agent acted within the scope you authorized.');
    expect(verdict).toContain('Your agent signed, with its registered key, this very request to this provider at this price');
    expect(verdict).toContain('Not mine');
    // Disputed once: the charges page says so instead of offering the form again.
    const after = await (await call('/dashboard/charges', { headers: { cookie: human.cookie } })).text();
    expect(after).not.toContain(`<label for="reason-${charge_id}">`);
    expect(after).toContain('Disputed');
  });

  it('the addresses the charges, the trail and a verdict first had lead to the dashboard, query and all', async () => {
    for (const [from, to] of [
      ['/charges', '/dashboard/charges'],
      ['/audit?action=charge.capture&agent=agt_x', '/dashboard/audit?action=charge.capture&agent=agt_x'],
      ['/disputes/dsp_123', '/dashboard/disputes/dsp_123'],
    ]) {
      const res = await call(from!, { redirect: 'manual' });
      expect(res.status, from).toBe(301);
      expect(res.headers.get('location')).toBe(to);
    }
    // Not signed in: to the sign-in page, coming back to the dashboard's page.
    const anonymous = await call('/dashboard/charges', { redirect: 'manual' });
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.get('location')).toBe('/sign-in?next=%2Fdashboard%2Fcharges');
  });
});

describe('the provider’s trail in the evidence: each event proven by a head the provider signed at it', () => {
  /** An honest bundle whose provider trail is an account's chain: a reserve of another charge, then this charge's provision (or plan change). */
  async function withProviderTrail(action: 'resource.provision' | 'resource.update' = 'resource.provision') {
    const { charge_id, bundle } = await disputedBundle();
    const account = 'acct_evidence';
    const other = chainAuditEvent({ actor: { type: 'agent', id: 'agt_x' }, action: 'charge.reserve', outcome: 'succeeded', related: ['chg_other'] }, { seq: 1, prev_hash: GENESIS_HASH, principal: account, id: 'evt_p1', time: '2026-11-01T00:00:00.000Z' });
    const provision = chainAuditEvent(
      { actor: { type: 'agent', id: bundle.charge.agent_id }, action, target: 'res_disputed', outcome: 'succeeded', related: [charge_id] },
      { seq: 2, prev_hash: other.hash, principal: account, id: 'evt_p2', time: '2026-11-01T00:00:01.000Z' },
    );
    bundle.audit.provider = { events: [provision], signed_head: null, heads: [await providerAuditHead('cloud', { account, seq: 2, hash: provision.hash })] };
    return bundle;
  }
  const providerFinding = async (bundle: EvidenceBundle) => (await adjudicate(bundle)).findings.find((f) => f.check === 'provider_trail')!;

  it('passes an honest trail, and shows nothing of the account’s other events', async () => {
    const bundle = await withProviderTrail();
    expect(await providerFinding(bundle)).toMatchObject({ result: 'pass', evidence: expect.stringContaining('each proven by a head the provider signed at it') });
    expect(JSON.stringify(bundle.audit.provider)).not.toContain('chg_other');
  });

  it('attack: the provision edited and its hash recomputed, or a head of another event, fails against the provider', async () => {
    const bundle = await withProviderTrail();
    const edited = structuredClone(bundle);
    const { hash: _, ...rest } = { ...edited.audit.provider!.events[0]!, actor: { type: 'system' as const, id: 'sys' } };
    edited.audit.provider!.events[0] = { ...rest, hash: auditEventHash(rest) };
    expect(await providerFinding(edited)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('not the one the provider signed') });
    const otherHead = structuredClone(bundle);
    otherHead.audit.provider!.heads = [await providerAuditHead('cloud', { account: 'acct_evidence', seq: 2, hash: 'a'.repeat(64) })];
    expect(await providerFinding(otherHead)).toMatchObject({ result: 'fail' });
    const foreignAccount = structuredClone(bundle);
    foreignAccount.audit.provider!.heads = [await providerAuditHead('cloud', { account: 'acct_someone_else', seq: 2, hash: bundle.audit.provider!.events[0]!.hash })];
    expect(await providerFinding(foreignAccount)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('not of one account') });
    const unproven = structuredClone(bundle);
    unproven.audit.provider!.heads = [];
    expect(await providerFinding(unproven)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('no head the provider signed at it') });
    expect((await adjudicate(edited)).failing_party).toBe('provider');
  });

  it('passes a plan change paid by the charge as it does a provision; another action paid by it is no delivery', async () => {
    expect(await providerFinding(await withProviderTrail('resource.update'))).toMatchObject({ result: 'pass' });
    const rotated = await withProviderTrail('resource.rotate' as 'resource.update');
    expect(await providerFinding(rotated)).toMatchObject({ result: 'fail', evidence: expect.stringContaining('no provision or plan change paid by this charge') });
  });

  it('an older provider’s trail without heads is unproven: missing, and the verdict stands on the rest', async () => {
    const bundle = await withProviderTrail();
    delete bundle.audit.provider!.heads;
    expect(await providerFinding(bundle)).toMatchObject({ result: 'missing', evidence: expect.stringContaining('carries no chain proof') });
    expect((await adjudicate(bundle)).verdict).toBe('within_scope');
  });
});

