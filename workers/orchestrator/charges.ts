// The charges API (PROTOCOL.md §3.1 step 3): a provider asks to charge a
// principal for what its agent signed for. The orchestrator checks that the
// subject is that provider's name for the principal, that the agent really
// signed this request for this service, plan and price (the signed
// expected_price, or else the provider's published one), then lets the
// principal's ledger decide every limit in one transaction.
import { jwtVerify } from 'jose';
import { newId } from '../lib/ids';
import { ED25519_ALGS } from '../lib/jws';
import { SignatureRefused, verifyRequestSignature } from '../lib/http-signatures';
import { signedCallMismatch, signedObject, type SignedPrice } from '../lib/signed-call';
import { ProblemError, refusalProblem } from '../lib/problem';
import type { Charge, RefundRequest } from '../lib/schemas/charges';
import type { ChargeRequestSchema } from '../lib/schemas/charges';
import type { z } from '@hono/zod-openapi';
import type { ChargeRequest } from '../../durable-objects/ledger/charges';
import { evidenceOf, type Hold } from '../../durable-objects/ledger/spend';
import { ledgerOf, type OrchestratorBindings, orchestratorConfig, providerKeys, providerOf } from './env';
import { isPublishedPrice, planBilling } from './provider-catalogs';
import { periodEndOf } from '../../durable-objects/ledger/renewal-periods';
import type { ProviderCaller } from './provider-auth';
import { principalOfSubject } from './store/pairwise';
import { mandateRoute } from './store/routing';

export type ChargeRequestBody = z.infer<typeof ChargeRequestSchema>;

const statusOf = (hold: Hold): Charge['status'] => (hold.status === 'pending' ? 'authorized' : hold.status);

export function toChargeWire(hold: Hold): Charge {
  return {
    charge_id: hold.id,
    status: statusOf(hold),
    amount: hold.amount,
    currency: hold.currency,
    amount_refunded: hold.refunded ?? 0,
    provider: hold.provider,
    service: hold.service,
    plan: hold.plan,
    mandate_id: hold.mandate_id,
    agent_id: hold.agent_id,
    description: hold.description,
    resource_ref: hold.resource_ref,
    created: new Date(hold.created).toISOString(),
    hold_expires_at: hold.status === 'pending' ? new Date(hold.expires_at).toISOString() : null,
    resolved_at: hold.resolved_at ? new Date(hold.resolved_at).toISOString() : null,
    receipt: hold.receipt,
    decision: decisionOf(hold),
  };
}

function decisionOf(hold: Hold): Charge['decision'] {
  const evidence = evidenceOf(hold);
  return evidence.constraint_results ? { mandate_status: evidence.mandate_status_at_decision ?? 'unknown', constraint_results: evidence.constraint_results } : null;
}

export async function chargeRoute(env: OrchestratorBindings, chargeId: string) {
  return env.DB.prepare('SELECT principal_id, provider_id FROM charge_routes WHERE charge_id = ?1').bind(chargeId).first<{ principal_id: string; provider_id: string }>();
}

/** A signed PATCH's expected_price: the full price of the new plan, which the agent agreed to and its renewals charge. */
function signedFullPrice(method: string, signed: Record<string, unknown> | null): { amount: number; currency: string } | null {
  if (method !== 'PATCH') return null;
  const price = signed?.expected_price as SignedPrice;
  return price && typeof price.amount === 'number' && typeof price.currency === 'string' ? { amount: price.amount, currency: price.currency } : null;
}

/**
 * A creation signed without a price is charged the provider's published one. A
 * retry of a charge already made (same idempotency_key) is left to the ledger,
 * which replays it as it was decided, whatever the catalog says now.
 */
async function checkPublishedPrice(
  env: OrchestratorBindings,
  caller: ProviderCaller,
  body: ChargeRequestBody,
  ledger: ReturnType<typeof ledgerOf>,
  refuse: (code: 'invalid_signature', status: number, detail: string) => Promise<ProblemError>,
) {
  let published: boolean | ProblemError;
  try {
    published = await isPublishedPrice(env, caller.provider.id, body.service, body.plan, { amount: body.amount, currency: body.currency });
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    published = error;
  }
  if (published === true) return;
  const made = await ledger.listCharges({ provider: caller.provider.id, idempotency_key: body.idempotency_key });
  if (made.length > 0) return;
  if (published instanceof ProblemError) throw published;
  throw await refuse('invalid_signature', 401, 'The charge is not what the agent signed for: the agent named no price, and this is not the price the provider publishes for the plan.');
}

export async function authorizeCharge(env: OrchestratorBindings, caller: ProviderCaller, body: ChargeRequestBody): Promise<Charge> {
  const config = orchestratorConfig(env);
  const principalId = await principalOfSubject(env.DB, caller.provider.id, body.principal_sub);
  if (!principalId) throw new ProblemError(404, 'not_found', 'principal_sub names no principal at this provider.');
  const route = await mandateRoute(env.DB, body.mandate_id);
  const ledger = ledgerOf(env, principalId);
  const refuse = async (code: 'invalid_signature' | 'mandate_inactive', status: number, detail: string) => {
    await ledger.recordRefusal(principalId, { actor: { type: 'provider', id: caller.provider.id }, action: 'charge.authorize', reason: code, mandate_id: body.mandate_id, related: [detail.slice(0, 200)] });
    return new ProblemError(status, code, detail);
  };
  if (!route || route.principal_id !== principalId) throw await refuse('mandate_inactive', 402, 'This mandate is not this principal’s.');

  const agent = await ledger.getAgent(body.agent_id);
  if (!agent) throw await refuse('invalid_signature', 401, 'The agent is not this principal’s.');
  let evidence: Record<string, unknown>;
  let agentSignature: ChargeRequest['agent_signature'] = null;
  if (body.renewal_of) {
    // A renewal rests on the charge it renews, which the agent signed for; the mandate is checked again now.
    // After a plan change the period's charge is that change's pro-rata part: the renewal is at the full price it was signed at.
    const original = await ledger.getCharge(body.renewal_of);
    const recorded = original ? evidenceOf(original) : {};
    const changed = recorded.plan_change?.full_price;
    const priced = !!original && original.currency === body.currency && (original.amount === body.amount || (changed?.amount === body.amount && changed.currency === body.currency));
    const same =
      original &&
      original.status === 'captured' &&
      original.provider === caller.provider.id &&
      original.agent_id === body.agent_id &&
      original.service === body.service &&
      (original.resource_ref ?? null) === (body.resource_ref ?? null) &&
      original.plan === body.plan &&
      priced;
    if (!same) throw await refuse('invalid_signature', 401, 'renewal_of names no captured charge of this agent for this resource, service, plan and price.');
    // How the plan is billed bounds how soon it renews (the ledger decides when, from this evidence): as the charge
    // recorded it when it was made, else as the catalog says now.
    const billing = recorded.billing ?? (await planBilling(env, caller.provider.id, body.service, body.plan));
    if (billing === 'one_time') throw await refuse('invalid_signature', 401, `${body.service}/${body.plan} is not a recurring plan: nothing renews it.`);
    evidence = { renewal_of: body.renewal_of, named_mandate_id: body.mandate_id, ...(billing ? { billing } : {}) };
  } else {
    const signedCall = body.agent_request!;
    let verified;
    try {
      verified = await verifyRequestSignature(
        {
          method: signedCall.method,
          targetUri: signedCall.target_uri,
          body: signedCall.body,
          contentDigest: signedCall.content_digest,
          signatureInput: signedCall.signature_input,
          signature: signedCall.signature,
        },
        agent.public_jwk,
        agent.key_thumbprint,
      );
    } catch (error) {
      throw await refuse('invalid_signature', 401, `The agent's signature does not hold: ${error instanceof SignatureRefused ? error.message : 'invalid'}.`);
    }
    // The signed body, read once for every check below.
    const signed = signedObject(signedCall.body);
    const mismatch = signedCallMismatch(signedCall, signed, {
      providerUrl: caller.provider.url,
      resourceRef: body.resource_ref ?? null,
      service: body.service,
      plan: body.plan,
      charged: { amount: body.amount, currency: body.currency },
    });
    if (mismatch) throw await refuse('invalid_signature', 401, `The charge is not what the agent signed for: ${mismatch}.`);
    // A creation signed without expected_price agreed to the price the provider publishes for the plan.
    const priceUnsigned = signedCall.method === 'POST' && signed!.expected_price == null;
    if (priceUnsigned) await checkPublishedPrice(env, caller, body, ledger, refuse);
    const full = signedFullPrice(signedCall.method, signed);
    // How the plan is billed, as published when the charge is made, so that a later catalog cannot shorten its
    // renewals' periods or make a one-time plan recurring; a catalog that cannot be read now (not retried for a
    // while, so that a catalog down slows no charge twice) leaves that to the catalog at renewal.
    const billing = await planBilling(env, caller.provider.id, body.service, body.plan, { bestEffort: true });
    evidence = {
      agent_request: signedCall,
      signature_base: verified.base,
      key_thumbprint: agent.key_thumbprint,
      ...(full ? { plan_change: { full_price: full } } : {}),
      ...(priceUnsigned ? { published_price: { amount: body.amount, currency: body.currency } } : {}),
      ...(billing ? { billing } : {}),
    };
    // Remembered while the signature could still verify (it is refused once expired), and a minute beyond.
    agentSignature = { nonce: `sig:${agent.key_thumbprint}:${verified.params.nonce}`, expires_ms: verified.params.expires * 1000 + 60_000 };
  }

  const chargeId = newId('chg');
  // Written ahead, so that a charge the ledger authorizes can always be found, even after a crash right then.
  await env.DB.prepare('INSERT INTO charge_routes (charge_id, principal_id, provider_id) VALUES (?1, ?2, ?3)').bind(chargeId, principalId, caller.provider.id).run();
  const decision = await ledger.authorizeCharge(principalId, {
    charge_id: chargeId,
    provider: caller.provider.id,
    provider_jti: caller.jti,
    provider_jti_expires_ms: caller.expiresMs,
    mandate_id: body.mandate_id,
    agent_id: body.agent_id,
    service: body.service,
    plan: body.plan,
    amount: { amount: body.amount, currency: body.currency },
    description: body.description,
    resource_ref: body.resource_ref ?? null,
    idempotency_key: body.idempotency_key,
    token_jti: body.token_jti,
    evidence: JSON.stringify(evidence),
    renewal_of: body.renewal_of ?? null,
    agent_signature: agentSignature,
    provider_event_id: body.provider_audit_event_id ?? null,
  });
  // A refusal, or a retry answered with the charge made the first time, leaves nothing behind: not even the route.
  if (!decision.ok || decision.hold.id !== chargeId) await env.DB.prepare('DELETE FROM charge_routes WHERE charge_id = ?1').bind(chargeId).run();
  if (decision.ok) return { ...toChargeWire(decision.hold), decision: decision.decision, audit_event_id: decision.audit_event_id };
  // Refusals that are not declines answer with their code's status (401, 401, 422).
  if (['replayed', 'invalid_signature', 'idempotency_key_reused'].includes(decision.code)) throw refusalProblem(decision);
  if (decision.code === 'renewal_not_due') {
    const wait = Math.max(1, Math.ceil((decision.renews_at! - Date.now()) / 1000));
    throw new ProblemError(409, 'renewal_not_due', decision.detail, { renews_at: new Date(decision.renews_at!).toISOString() }, { 'Retry-After': String(wait) });
  }
  // Where the human can approve more: the dashboard's limits page, or the mandate (whose agent may ask for a larger one).
  const stepUp = decision.scope === 'principal' ? `${config.PUBLIC_BASE_URL}/dashboard/limits` : `${config.PUBLIC_BASE_URL}/mandates/${decision.mandate_id ?? body.mandate_id}/approval`;
  throw refusalProblem(decision, 402).withExtra({
    ...(decision.limit ? { limit: decision.limit, spent: decision.spent, requested: decision.requested } : {}),
    step_up_url: stepUp,
  });
}

/**
 * §4: a receipt is the provider's JWS over what it charged for; it must verify
 * with the provider's published key and name this charge and its amount; the
 * end of the period it pays for, if it states one, is a date-time.
 */
async function verifyReceipt(env: OrchestratorBindings, caller: ProviderCaller, hold: Hold, receipt: string): Promise<void> {
  const provider = providerOf(env, caller.provider.id)!;
  let payload;
  try {
    ({ payload } = await jwtVerify(receipt, providerKeys(env, provider), { typ: 'oap-receipt+jwt', algorithms: ED25519_ALGS, issuer: provider.issuer }));
  } catch {
    throw new ProblemError(422, 'invalid_request', 'The receipt does not verify with the provider’s published keys.');
  }
  // A renewal is decided under its mandate chain's current link: a receipt may name that one or the one the provider asked under.
  const mandateNamed = payload.mandate_id === hold.mandate_id || (typeof payload.mandate_id === 'string' && payload.mandate_id === evidenceOf(hold).named_mandate_id);
  if (payload.charge_id !== hold.id || payload.amount !== hold.amount || payload.currency !== hold.currency || payload.agent_id !== hold.agent_id || !mandateNamed) {
    throw new ProblemError(422, 'invalid_request', 'The receipt does not describe this charge.');
  }
  if (payload.period_end !== undefined && periodEndOf(payload.period_end) === null) {
    throw new ProblemError(422, 'invalid_request', 'The receipt’s period_end is not an RFC 3339 date-time.');
  }
}

/**
 * A provider gives back part of a charge it captured (a downgrade's pro-rata
 * credit): the principal's spend this period drops by as much, never below
 * what was charged, once per idempotency key; audited as charge.refund.
 */
export async function refundCharge(env: OrchestratorBindings, caller: ProviderCaller, chargeId: string, refund: RefundRequest): Promise<Charge> {
  const route = await chargeRoute(env, chargeId);
  if (!route || route.provider_id !== caller.provider.id) throw new ProblemError(404, 'not_found', 'No such charge.');
  const ledger = ledgerOf(env, route.principal_id);
  const result = await ledger.refundChargePart(
    route.principal_id,
    chargeId,
    { amount: refund.amount, currency: refund.currency, reason: refund.reason, key: refund.idempotency_key },
    { type: 'provider', id: caller.provider.id },
    { jti: caller.jti, expiresMs: caller.expiresMs },
  );
  if (result.ok) return toChargeWire(result.hold);
  if (result.code === 'replayed') throw new ProblemError(401, 'replayed', result.detail);
  if (result.code === 'not_found') throw new ProblemError(404, 'not_found', result.detail);
  if (result.code === 'idempotency_key_reused') throw new ProblemError(422, 'idempotency_key_reused', result.detail);
  // The provider tells "not captured yet, retry" from "nothing left to give back" by the status.
  const hold = await ledger.getCharge(chargeId);
  const refundable = 'refundable' in result ? result.refundable : 0;
  throw new ProblemError(409, 'invalid_request', result.detail, { charge_status: hold ? statusOf(hold) : null, refundable: { amount: refundable, currency: hold?.currency ?? refund.currency } });
}

/**
 * The provider's own charge for a principal that it asked for with this
 * idempotency key, if any: how a provider whose authorization answer never
 * arrived (a timeout, a 5xx) learns the charge it has to void, rather than
 * leaving it to lapse while it counts against the principal's limits.
 */
export async function findProviderCharge(env: OrchestratorBindings, caller: ProviderCaller, principalSub: string, idempotencyKey: string): Promise<Charge[]> {
  const principalId = await principalOfSubject(env.DB, caller.provider.id, principalSub);
  if (!principalId) return [];
  const holds = await ledgerOf(env, principalId).listCharges({ provider: caller.provider.id, idempotency_key: idempotencyKey });
  return holds.map(toChargeWire);
}

export async function resolveCharge(
  env: OrchestratorBindings,
  caller: ProviderCaller,
  chargeId: string,
  action: 'capture' | 'void',
  detail: { receipt?: string; reason?: string; provider_audit_event_id?: string },
): Promise<Charge> {
  const route = await chargeRoute(env, chargeId);
  if (!route || route.provider_id !== caller.provider.id) throw new ProblemError(404, 'not_found', 'No such charge.');
  const ledger = ledgerOf(env, route.principal_id);
  if (action === 'capture' && detail.receipt) {
    const hold = await ledger.getCharge(chargeId);
    if (!hold) throw new ProblemError(404, 'not_found', 'No such charge.');
    // Only a pending charge keeps a receipt: a capture retried, or one after a void, is the ledger's to answer.
    if (hold.status === 'pending') await verifyReceipt(env, caller, hold, detail.receipt);
  }
  const actor = { type: 'provider' as const, id: caller.provider.id };
  const jti = { jti: caller.jti, expiresMs: caller.expiresMs };
  const result =
    action === 'capture'
      ? await ledger.captureCharge(route.principal_id, chargeId, actor, jti, detail.receipt, detail.provider_audit_event_id ? [detail.provider_audit_event_id] : [])
      : await ledger.voidCharge(route.principal_id, chargeId, actor, detail.reason ?? 'provider_void', jti);
  if (result.ok) return toChargeWire(result.hold);
  throw refusalProblem(result, result.code === 'not_found' ? 404 : result.code === 'replayed' ? 401 : 409);
}
