// POST /v1/resources as a saga (PROTOCOL.md §3.1): validate, reserve in the
// account's ledger, authorize at the orchestrator, provision, capture both;
// on any failure void both. The ledger object records each step, and its
// alarm finishes what a crash interrupted (recover*, settle*, runAsync*).
import { Validator } from '@cfworker/json-schema';
import { canonicalJson, sha256Hex } from '../lib/audit';
import { newId } from '../lib/ids';
import { linkOn } from '../lib/links';
import { signJwt } from '../lib/jws';
import type { IdempotencyRecord } from '../lib/idempotency';
import { ProblemError } from '../lib/problem';
import type { Money } from '../lib/schemas/money';
import type { RecurringBilling, Service } from '../lib/schemas/catalog';
import { loadSigningKeys } from '../lib/signing-keys';
import type { Authorization, Saga, Resource } from '../../durable-objects/ledger/sagas';
import type { OwedChargeCall } from '../../durable-objects/ledger/sagas';
import { type Billed, nextRenewal, renewable, renewalKey, type Suspension } from '../../durable-objects/ledger/renewals';
import { publishedCatalog } from './catalog';
import { ledgerOf, providerConfig, type ProviderBindings } from './env';
import type { AccessTokenClaims } from './oauth/access-tokens';
import { recordedAlready } from './refusals';
import { callOrchestrator, OrchestratorUnreachable } from './orchestrator-client';
import { backendFor, ProvisionRefused, type ProvisionContext, type ResourceRef } from './services';

export type ResourceRequest = { service: string; plan: string; parameters: Record<string, unknown>; expected_price?: Money | undefined };
export type SignedCall = { method: string; target_uri: string; body: string; content_digest: string; signature_input: string; signature: string };

const WINDOW_UNITS: Record<string, number> = { D: 86_400_000, H: 3_600_000, M: 60_000, S: 1000 };

/** ISO 8601 duration (P1D, PT1H, PT15M) in milliseconds. */
export function windowMs(duration: string): number {
  const [, days = '0', time = ''] = /^P(?:(\d+)D)?(?:T(.*))?$/.exec(duration) ?? [];
  let ms = Number(days) * WINDOW_UNITS.D!;
  for (const [, n, unit] of time.matchAll(/(\d+)([HMS])/g)) ms += Number(n) * WINDOW_UNITS[unit!]!;
  return ms;
}

const validators = new WeakMap<object, Validator>();

/** Step 1: the catalog says what exists, at what price, with which parameters. */
export function checkAgainstCatalog(env: ProviderBindings, request: ResourceRequest): { service: Service; price: Money } {
  const { catalog } = publishedCatalog(providerConfig(env));
  const service = catalog.services.find((s) => s.id === request.service);
  if (!service) throw new ProblemError(422, 'invalid_parameters', `No service ${request.service} here.`, { errors: [{ path: '/service', message: 'unknown service' }] });
  const plan = service.plans.find((p) => p.id === request.plan);
  if (!plan) throw new ProblemError(422, 'invalid_parameters', `No plan ${request.plan} for ${service.id}.`, { errors: [{ path: '/plan', message: 'unknown plan' }] });
  let validator = validators.get(service.parameters_schema);
  if (!validator) {
    validator = new Validator(service.parameters_schema as never, '2020-12', false);
    validators.set(service.parameters_schema, validator);
  }
  const result = validator.validate(request.parameters);
  if (!result.valid) {
    const errors = result.errors
      .filter((e) => e.keyword !== 'properties')
      .map((e) => ({ path: `/parameters${e.instanceLocation.replace(/^#/, '')}`, message: e.error }));
    throw new ProblemError(422, 'invalid_parameters', 'The parameters do not fit the service’s schema.', { errors });
  }
  if (request.expected_price && (request.expected_price.amount !== plan.price.amount || request.expected_price.currency !== plan.price.currency)) {
    throw new ProblemError(409, 'price_changed', `The price is now ${plan.price.amount} ${plan.price.currency}.`, { price: plan.price });
  }
  return { service, price: plan.price };
}

export type ProvisionOutcome =
  | { kind: 'created'; resource: Record<string, unknown>; credentials: Record<string, unknown> | null; charge_id: string; audit_event_id: string; receipt: string; recorded?: boolean }
  | { kind: 'accepted'; operation_id: string; audit_event_id: string | null };

export async function provisionResource(
  env: ProviderBindings,
  claims: AccessTokenClaims,
  request: ResourceRequest,
  signed: SignedCall,
  signatureBase: string,
  idempotencyKey: string,
  /** The Idempotency-Key's record, completed with the saga when the call is answered at once. */
  record?: IdempotencyRecord,
): Promise<ProvisionOutcome> {
  // §3.1 step 1, in its order: the catalog first (an unknown service or plan, bad parameters, a changed price), then
  // the mandate's services and the token's scope.
  const { service, price } = checkAgainstCatalog(env, request);
  if (!claims.detail.services.includes(request.service)) throw new ProblemError(403, 'insufficient_scope', `The mandate does not allow ${request.service}.`);
  if (!service.scopes.every((s) => claims.scope.includes(s))) throw new ProblemError(403, 'insufficient_scope', `This token lacks ${service.scopes.join(' ')}.`);
  const backend = backendFor(service.id);
  if (!backend) throw new ProblemError(422, 'invalid_parameters', `${service.id} cannot be provisioned here.`);
  const ledger = ledgerOf(env, claims.account_id);
  const resourceId = newId('res');
  const ctx: ProvisionContext = { resource_id: resourceId, account_id: claims.account_id, service: service.id, plan: request.plan, parameters: request.parameters };
  const requestKey = `${claims.account_id}:${claims.agent_id} ${idempotencyKey}`;
  // Read while the service checks the request: who the principal is at this provider.
  const subject = subjectOf(env, claims);
  subject.catch(() => undefined);
  try {
    await backend.check?.(env, ctx);
  } catch (error) {
    // The same call retried after a crash finds its own name taken: by itself.
    const existing = error instanceof ProvisionRefused ? await ledger.liveSagaFor(requestKey) : null;
    if (existing) return alreadyStarted(env, claims.account_id, existing as Saga);
    // Recorded in the account's trail by the route (auditRefusals), as every refusal of a paid call.
    if (error instanceof ProvisionRefused) throw new ProblemError(error.status, error.code, error.message);
    throw error;
  }

  // Step 2: the account's own limit and the catalog's velocity limit, in the account's ledger.
  const velocity = service.limits.per_principal ? { count: service.limits.per_principal.count, window_ms: windowMs(service.limits.per_principal.window) } : null;
  const sagaId = newId('op');
  const started = await ledger.beginSaga(claims.account_id, {
    saga_id: sagaId,
    resource_id: resourceId,
    hold_id: `hld_${sagaId.slice(3)}`,
    agent_id: claims.agent_id,
    mandate_id: claims.detail.mandate_id,
    orchestrator: claims.orchestrator,
    principal_sub: await subject,
    token_jti: claims.jti,
    service: service.id,
    plan: request.plan,
    price,
    parameters: JSON.stringify(request.parameters),
    request: JSON.stringify({ ...signed, signature_base: signatureBase }),
    async: service.provisioning === 'async',
    velocity,
    request_key: requestKey,
  });
  if (!started.ok && started.existing) return alreadyStarted(env, claims.account_id, started.existing as Saga);
  if (!started.ok) {
    throw recordedAlready(
      new ProblemError(402, started.code as 'spend_limit_exceeded', started.detail, started.limit ? { limit: started.limit, spent: started.spent, requested: started.requested, step_up_url: accountLimitsUrl(env) } : {}),
    );
  }
  // Step 3: the orchestrator decides the mandate and every limit of the principal.
  const ask: ChargeAsk = { begun: started, signed, description: `${service.name}, ${request.plan}`, unchanged: 'nothing was charged' };
  if (service.provisioning === 'async') {
    await authorizeSaga(env, claims, ask, true);
    return { kind: 'accepted', operation_id: sagaId, audit_event_id: started.event_id };
  }
  // A synchronous creation records the authorization with its completion (or its void): one write fewer on the paid path.
  const { saga, authorization } = await askAuthorization(env, claims, ask);
  if (Date.now() >= saga.deadline - DEADLINE_MARGIN_MS) {
    // Recovery may take the saga from here on, and would not know of what we provisioned now.
    await ledger.voidSaga(claims.account_id, sagaId, 'deadline_passed', false, authorization);
    throw new ProblemError(503, 'internal_error', 'The paid call timed out; nothing was charged.');
  }

  // Step 4: provision; any failure undoes it and voids both holds.
  const done = await provisionAndComplete(env, claims.account_id, saga, false, request.parameters, record, authorization);
  return { kind: 'created', ...done };
}

/**
 * A synchronous creation does not start provisioning this close to its saga's
 * deadline, when recovery may claim it (this covers the skew between the
 * Worker's clock and the ledger's): what recovery takes down is then at most
 * what is being made as it looks, and a request whose completion is refused
 * takes down what it made. A crash in that overlap is the one case left to
 * the backend's own expiry, as it was when the authorization was recorded first.
 */
const DEADLINE_MARGIN_MS = 5000;

/** A saga's charge as the orchestrator is asked for it: the saga begun, the agent's signed call, what the charge is for, and what a refusal leaves as it was. */
export type ChargeAsk = { begun: { saga: Saga; event_id: string }; signed: SignedCall; description: string; unchanged: string };

/**
 * §3.1 step 3 for a saga, a creation's or a plan change's: the orchestrator
 * decides the mandate and every limit of the principal. When it refuses or
 * cannot be reached the saga is voided and the caller answered as it was.
 * The authorization is returned, not recorded: the saga as it would read once
 * recorded, and what to record. `unchanged` says what a refusal leaves as it was.
 */
async function askAuthorization(env: ProviderBindings, claims: AccessTokenClaims, ask: ChargeAsk): Promise<{ saga: Saga; authorization: Authorization }> {
  const { begun, signed, description, unchanged } = ask;
  const ledger = ledgerOf(env, claims.account_id);
  const sagaId = begun.saga.id;
  // What the saga reserved, on the agent's signed call: the orchestrator checks the one against the other.
  const charge = {
    mandate_id: claims.detail.mandate_id,
    principal_sub: begun.saga.principal_sub,
    agent_id: claims.agent_id,
    service: begun.saga.service,
    plan: begun.saga.plan,
    amount: begun.saga.amount,
    currency: begun.saga.currency,
    description,
    resource_ref: begun.saga.resource_id,
    token_jti: claims.jti,
    agent_request: signed,
    provider_audit_event_id: begun.event_id,
    idempotency_key: sagaId,
  };
  let answer;
  try {
    answer = await callOrchestrator(env, claims.orchestrator, 'POST', '/v1/charges', charge);
  } catch (error) {
    // The request may have been decided without its answer arriving: the charge is then found by its key and voided.
    await ledger.voidSaga(claims.account_id, sagaId, 'orchestrator_unreachable', true);
    throw new ProblemError(503, 'internal_error', error instanceof OrchestratorUnreachable ? `The orchestrator could not be reached; ${unchanged}.` : 'Authorization failed.');
  }
  if (answer.status !== 201 || typeof answer.body?.charge_id !== 'string') {
    // A 4xx is a decision (nothing was authorized); after a 5xx the orchestrator may have authorized all the same.
    await ledger.voidSaga(claims.account_id, sagaId, `declined:${String(answer.body?.code ?? answer.status)}`, answer.status >= 500);
    if (answer.status === 402 && answer.body) {
      const { code, detail, limit, spent, requested, step_up_url } = answer.body as Record<string, unknown>;
      // Recorded with the void, as the provision's failure for this reason.
      throw recordedAlready(new ProblemError(402, code as 'spend_limit_exceeded', String(detail ?? 'Declined by the orchestrator.'), { limit, spent, requested, step_up_url }));
    }
    if (answer.status === 503 && answer.retryAfter) {
      // The orchestrator could not decide now (a provider's catalog it could not read): the agent may try again then.
      throw new ProblemError(503, 'internal_error', `The orchestrator could not decide the charge now; ${unchanged}.`, {}, { 'Retry-After': answer.retryAfter });
    }
    throw new ProblemError(502, 'internal_error', `The orchestrator refused the charge (HTTP ${answer.status}); ${unchanged}.`);
  }
  const chargeId = answer.body.charge_id;
  const decision = JSON.stringify({ ...((answer.body.decision ?? {}) as Record<string, unknown>), audit_event_id: answer.body.audit_event_id ?? null });
  return { saga: { ...begun.saga, state: 'authorized', charge_id: chargeId, charge_decision: decision }, authorization: { charge_id: chargeId, decision } };
}

/**
 * `askAuthorization`, recorded on the saga before anything is provisioned (a
 * plan change, an async creation). The saga must still be the request's:
 * recovery may have given up on it meanwhile (its charge's void is then owed already).
 * `provisionLater`: an async creation, whose provisioning the alarm is asked for in the same write.
 */
export async function authorizeSaga(env: ProviderBindings, claims: AccessTokenClaims, ask: ChargeAsk, provisionLater = false): Promise<Saga> {
  const { authorization } = await askAuthorization(env, claims, ask);
  const saga = (await ledgerOf(env, claims.account_id).recordAuthorization(claims.account_id, ask.begun.saga.id, authorization.charge_id, authorization.decision, provisionLater)) as Saga | null;
  if (saga?.state !== 'authorized') throw new ProblemError(503, 'internal_error', `The paid call timed out; ${ask.unchanged}.`);
  return saga;
}

/**
 * The same paid call again, after its Idempotency-Key record was lost (a crash
 * between the saga and the record): its outcome, never a second charge.
 */
async function alreadyStarted(env: ProviderBindings, accountId: string, saga: Saga): Promise<ProvisionOutcome> {
  if (saga.state === 'completed' && saga.charge_id) {
    const ledger = ledgerOf(env, accountId);
    const [resource, hold] = await Promise.all([ledger.getResource(saga.resource_id), ledger.getCharge(saga.hold_id)]);
    if (saga.audit_event_id && resource) {
      return { kind: 'created', resource: resourceWire(resource as Resource), credentials: null, charge_id: saga.charge_id, audit_event_id: saga.audit_event_id, receipt: hold?.receipt ?? '' };
    }
  }
  if (saga.kind === 'create' && saga.state === 'authorized' && isAsync(env, saga.service)) {
    // The event that began it is the first answer's; this answer stands in for a lost record of it.
    return { kind: 'accepted', operation_id: saga.id, audit_event_id: null };
  }
  throw new ProblemError(409, 'idempotency_request_in_progress', 'This paid call is still being processed.', {}, { 'Retry-After': '1' });
}

/** The principal's pairwise subject at this provider: the link the token's account was found by. */
export async function subjectOf(env: ProviderBindings, claims: AccessTokenClaims): Promise<string> {
  const row = await env.DB.prepare('SELECT sub FROM account_links WHERE account_id = ?1 AND iss = ?2').bind(claims.account_id, claims.orchestrator).first<{ sub: string }>();
  if (!row) throw new ProblemError(403, 'insufficient_scope', 'This account is not linked to the token’s orchestrator.');
  return row.sub;
}

/** `authorization`: the orchestrator's, not recorded yet (a synchronous creation); recorded with the completion or the void. */
async function provisionAndComplete(
  env: ProviderBindings,
  accountId: string,
  saga: Saga,
  keepCredentials: boolean,
  parameters?: Record<string, unknown>,
  record?: IdempotencyRecord,
  authorization?: Authorization,
) {
  const ledger = ledgerOf(env, accountId);
  const backend = backendFor(saga.service)!;
  // The request that started the saga has its parameters at hand; the alarm reads them from the ledger.
  const known = parameters ?? (JSON.parse(((await ledger.getResource(saga.resource_id)) as Resource).parameters) as Record<string, unknown>);
  const ctx: ProvisionContext = { resource_id: saga.resource_id, account_id: accountId, service: saga.service, plan: saga.plan, parameters: known };
  let provisioned;
  try {
    provisioned = await backend.provision(env, ctx);
  } catch (error) {
    await backend.deprovision(env, { resource_id: saga.resource_id, account_id: accountId }).catch(() => undefined);
    await ledger.voidSaga(accountId, saga.id, error instanceof ProvisionRefused ? error.code : 'provision_failed', false, authorization);
    // Recorded with the void, as the provision's failure for this reason.
    if (error instanceof ProvisionRefused) throw recordedAlready(new ProblemError(error.status, error.code, error.message));
    throw new ProblemError(502, 'internal_error', 'Provisioning failed; nothing was charged.');
  }
  const plan = publishedCatalog(providerConfig(env)).catalog.services.find((s) => s.id === saga.service)?.plans.find((p) => p.id === saga.plan);
  const billing = plan?.billing ?? 'one_time';
  // A recurring plan's first period starts now; the receipt states where it ends, and the plan renews there.
  const billed: Billed = billing === 'one_time' ? { billing, renews_at: null } : { billing, renews_at: nextRenewal(Date.now(), billing) };
  const receipt = await signReceipt(env, saga, saga.charge_id!, billed.renews_at);
  const completed = await ledger.completeSaga(
    accountId,
    saga.id,
    {
      fields: JSON.stringify(provisioned.fields),
      credentials: keepCredentials && provisioned.credentials ? JSON.stringify(provisioned.credentials) : null,
      receipt,
      ...billed,
      ...(authorization ? { authorization } : {}),
    },
    record ? { ...record, credentials_shown: provisioned.credentials !== null } : undefined,
    provisioned.supersedes,
  );
  if (!completed) {
    // The alarm gave up on this saga while we provisioned: undo what we made.
    await backend.deprovision(env, { resource_id: saga.resource_id, account_id: accountId }).catch(() => undefined);
    throw new ProblemError(503, 'internal_error', 'The provisioning timed out; nothing was charged.');
  }
  if (provisioned.supersedes) await retire(env, accountId, { service: saga.service, resource_id: provisioned.supersedes });
  return { resource: resourceWire(completed.resource as Resource), credentials: provisioned.credentials, charge_id: saga.charge_id!, audit_event_id: completed.event.id, receipt, recorded: record !== undefined };
}

/**
 * A resource a newer one of the same service replaced, deleted in the ledger with the
 * completion: the backend is told now; the outbox retries if it fails.
 */
async function retire(env: ProviderBindings, accountId: string, resource: Pick<Saga, 'service' | 'resource_id'>) {
  const ledger = ledgerOf(env, accountId);
  try {
    await deprovision(env, accountId, resource);
    await ledger.confirmDeprovision(accountId, resource.resource_id);
  } catch (error) {
    await ledger.deprovisionDeferred(accountId, resource.resource_id, String(error));
  }
}

/** The orchestrator's decision on a charge, as it answered the authorization. */
type ChargeDecision = { mandate_status?: string; constraint_results?: unknown[] };

/** What every receipt says: who charged whom, which charge of which resource, on what decision, for how much, until when (recurring plans). */
type ReceiptCore = {
  saga: Pick<Saga, 'orchestrator' | 'agent_id' | 'mandate_id' | 'resource_id'>;
  chargeId: string;
  decision: ChargeDecision | null;
  amount: Money;
  periodEnd: number | null;
};

async function signReceiptClaims(env: ProviderBindings, core: ReceiptCore, claims: Record<string, unknown>): Promise<string> {
  const config = providerConfig(env);
  return signJwt(await loadSigningKeys(config.SIGNING_KEYS), 'oap-receipt+jwt', {
    iss: config.PUBLIC_BASE_URL,
    aud: core.saga.orchestrator,
    charge_id: core.chargeId,
    resource_id: core.saga.resource_id,
    ...claims,
    agent_id: core.saga.agent_id,
    mandate_id: core.saga.mandate_id,
    mandate_status_at_decision: core.decision?.mandate_status ?? 'active',
    constraint_results: core.decision?.constraint_results ?? [],
    amount: core.amount.amount,
    currency: core.amount.currency,
    ...(core.periodEnd === null ? {} : { period_end: new Date(core.periodEnd).toISOString() }),
    time: new Date().toISOString(),
    iat: Math.floor(Date.now() / 1000),
  });
}

/**
 * §4: the provider's signed account of what was charged, for what, on whose signed request; for a recurring
 * plan, also until when it pays (`period_end`): the orchestrator takes no renewal of the charge before then.
 */
export async function signReceipt(env: ProviderBindings, saga: Saga, chargeId: string, periodEnd: number | null): Promise<string> {
  const request = JSON.parse(saga.request) as SignedCall & { signature_base: string };
  const decision = saga.charge_decision ? (JSON.parse(saga.charge_decision) as ChargeDecision | null) : null;
  return signReceiptClaims(env, { saga, chargeId, decision, amount: { amount: saga.amount, currency: saga.currency }, periodEnd }, {
    request_hash: sha256Hex(canonicalJson({ method: request.method, target_uri: request.target_uri, body: request.body })),
    agent_signature: { signature_input: request.signature_input, signature: request.signature, content_digest: request.content_digest },
    token_jti: saga.token_jti,
  });
}

/** Where the account's human raises its own limit here (the `step_up_url` of a refusal by that limit). */
export const accountLimitsUrl = (env: ProviderBindings) => `${providerConfig(env).PUBLIC_BASE_URL}/limits`;

export function resourceWire(resource: Resource): Record<string, unknown> {
  return {
    resource_id: resource.id,
    service: resource.service,
    plan: resource.plan,
    status: resource.status,
    created: resource.created,
    // For a suspended resource, when its renewal is tried next.
    ...(resource.renews_at !== null && renewable(resource) ? { renews_at: new Date(resource.renews_at).toISOString() } : {}),
    ...(resource.fields ? (JSON.parse(resource.fields) as Record<string, unknown>) : {}),
    // And why it is suspended (after the service's fields: none of them can stand in for it).
    ...(resource.status === 'suspended' && resource.suspension
      ? { suspension: { ...(JSON.parse(resource.suspension) as Suspension), since: new Date(resource.suspended_at!).toISOString() } }
      : {}),
  };
}

// ── What the account's ledger alarm runs ──────────────────────────────────

/**
 * A capture, void or refund owed to the orchestrator. Returns whether it is
 * settled; `refused` is a refund the orchestrator will never take.
 */
export async function settleChargeCall(
  env: ProviderBindings,
  accountId: string,
  call: OwedChargeCall,
  proof: { receipt: string | null; eventId: string | null },
): Promise<'settled' | 'retry' | 'voided_remotely' | 'refused'> {
  if (call.action === 'void_by_key') return voidLostAuthorization(env, call);
  let result;
  try {
    // §4: the capture carries the provider's signed receipt (verified and kept by the orchestrator) and its own event id.
    const body =
      call.action === 'capture'
        ? { ...(proof.receipt ? { receipt: proof.receipt } : {}), ...(proof.eventId ? { provider_audit_event_id: proof.eventId } : {}) }
        : call.action === 'refund'
          ? (JSON.parse(call.body ?? '{}') as object)
          : {};
    result = await callOrchestrator(env, call.orchestrator, 'POST', `/v1/charges/${call.charge_id}/${call.action}`, body);
  } catch {
    return 'retry';
  }
  if (result.status === 200) return 'settled';
  if (call.action === 'refund') {
    // Not yet captured there (its capture is still owed): later. Anything else refused stays refused.
    if (result.status === 409 && result.body?.charge_status === 'authorized') return 'retry';
    return result.status === 409 || result.status === 404 || result.status === 422 ? 'refused' : 'retry';
  }
  if (call.action === 'capture' && result.status === 409 && result.body?.code === 'charge_voided') return 'voided_remotely';
  if (call.action === 'void' && result.status === 409) return 'settled'; // captured meanwhile: the orchestrator decides, and it was told to void
  if (result.status === 404 && call.action === 'void') return 'settled';
  return 'retry';
}

/**
 * A charge the orchestrator may have authorized without its answer arriving:
 * found by the principal's subject and the saga's key, then voided. Nothing
 * found is final (the request can no longer be taken when this runs).
 */
async function voidLostAuthorization(env: ProviderBindings, call: OwedChargeCall): Promise<'settled' | 'retry'> {
  const { principal_sub, idempotency_key } = JSON.parse(call.body ?? '{}') as { principal_sub: string; idempotency_key: string };
  const query = new URLSearchParams({ principal_sub, idempotency_key });
  try {
    const found = await callOrchestrator(env, call.orchestrator, 'GET', `/v1/charges?${query}`);
    if (found.status !== 200 || !Array.isArray(found.body?.data)) return 'retry';
    const chargeId = (found.body.data as { charge_id?: unknown }[])[0]?.charge_id;
    if (typeof chargeId !== 'string') return 'settled';
    const voided = await callOrchestrator(env, call.orchestrator, 'POST', `/v1/charges/${chargeId}/void`, { reason: 'authorization_answer_lost' });
    // 409: captured or refunded there already; the orchestrator decides, as for any void.
    return voided.status === 200 || voided.status === 404 || voided.status === 409 ? 'settled' : 'retry';
  } catch {
    return 'retry';
  }
}

export async function deprovision(env: ProviderBindings, accountId: string, saga: Pick<Saga, 'service' | 'resource_id'>) {
  await backendFor(saga.service)?.deprovision(env, { resource_id: saga.resource_id, account_id: accountId });
}

export const isAsync = (env: ProviderBindings, service: string) => publishedCatalog(providerConfig(env)).catalog.services.find((s) => s.id === service)?.provisioning === 'async';

/** An async saga's provisioning step, run by the alarm. A sync saga is its request's to finish, never the alarm's. */
export async function runAsyncProvision(env: ProviderBindings, accountId: string, saga: Saga): Promise<void> {
  if (saga.state !== 'authorized' || !saga.charge_id || !isAsync(env, saga.service)) return;
  await provisionAndComplete(env, accountId, saga, true).catch(() => undefined);
}

/** An authorized renewal comes with its receipt: the period it pays for, from the boundary it renews at to `renews_at`. */
export type RenewalOutcome =
  | { kind: 'authorized'; charge_id: string; receipt: string; renews_at: number }
  | { kind: 'declined'; code: string; step_up_url: string | null }
  | { kind: 'not_due'; renews_at: number }
  | { kind: 'unreachable' };

/** The catalog price of the plan a resource is on now (after any plan change); null if the plan is gone. */
export function renewalPrice(env: ProviderBindings, resource: Pick<Resource, 'service' | 'plan'>): Money | null {
  const service = publishedCatalog(providerConfig(env)).catalog.services.find((s) => s.id === resource.service);
  return service?.plans.find((p) => p.id === resource.plan)?.price ?? null;
}

/**
 * A renewal asks the orchestrator through the same charge path; instead of a
 * fresh agent signature it names the period's charge (the creation, the last
 * renewal or a plan change), which the agent signed for, at the current
 * plan's price.
 */
export async function requestRenewal(env: ProviderBindings, saga: Saga, resource: Resource, holdId: string, price: Money): Promise<RenewalOutcome> {
  // The resource's latest charge (a plan change's, or the last renewal), else its creation's.
  const renewalOf = resource.charge_id ?? saga.charge_id;
  let result;
  try {
    result = await callOrchestrator(env, saga.orchestrator, 'POST', '/v1/charges', {
      mandate_id: saga.mandate_id,
      principal_sub: saga.principal_sub,
      agent_id: saga.agent_id,
      service: resource.service,
      plan: resource.plan,
      amount: price.amount,
      currency: price.currency,
      description: `Renewal of ${resource.service} ${resource.plan}`,
      resource_ref: resource.id,
      idempotency_key: renewalKey(resource.id, holdId),
      token_jti: saga.token_jti,
      renewal_of: renewalOf,
    });
  } catch {
    return { kind: 'unreachable' };
  }
  if (result.status === 201 && typeof result.body?.charge_id === 'string') {
    // The receipt rests on the charge it renews (`renewal_of`) rather than on a request the agent signed, so it names none.
    // The period runs from the boundary; for a suspended resource, from now, when it is served again.
    const renewsAt = nextRenewal(resource.status === 'suspended' ? Date.now() : resource.renews_at!, resource.billing as RecurringBilling);
    // Decided under the current link of the mandate chain (a human may have re-approved since): the receipt names it.
    const mandateId = typeof result.body.mandate_id === 'string' ? result.body.mandate_id : saga.mandate_id;
    const core = { saga: { ...saga, mandate_id: mandateId }, chargeId: result.body.charge_id, decision: (result.body.decision as ChargeDecision | undefined) ?? null, amount: price, periodEnd: renewsAt };
    const receipt = await signReceiptClaims(env, core, { renewal_of: renewalOf });
    return { kind: 'authorized', charge_id: result.body.charge_id, receipt, renews_at: renewsAt };
  }
  if (result.status === 402 || result.status === 401 || result.status === 404) {
    const code = String(result.body?.code ?? result.status);
    // Where a human raises the limit that declined it, as its 402 said: only a page of that orchestrator (what the
    // resource shows its agent, and the agent its human, is never another site's link).
    return { kind: 'declined', code, step_up_url: code === 'spend_limit_exceeded' ? linkOn(result.body?.step_up_url, saga.orchestrator) : null };
  }
  // Asked before the period ends as the orchestrator counts it: renewed when it says.
  const notBefore = result.status === 409 && result.body?.code === 'renewal_not_due' ? Date.parse(String(result.body.renews_at)) : NaN;
  if (Number.isFinite(notBefore)) return { kind: 'not_due', renews_at: notBefore };
  return { kind: 'unreachable' };
}


/** The backend's view of a resource the ledger holds. */
function refOf(accountId: string, resource: Resource, plan = resource.plan): ResourceRef {
  return { resource_id: resource.id, account_id: accountId, service: resource.service, plan, fields: resource.fields ? (JSON.parse(resource.fields) as Record<string, unknown>) : {} };
}

/** A plan change undone (recovered, or its capture refused): the backend back on the previous plan; its fields. */
export async function revertPlan(env: ProviderBindings, accountId: string, saga: Saga, resource: Resource): Promise<Record<string, unknown>> {
  const backend = backendFor(resource.service);
  if (!backend?.changePlan || !saga.previous_plan) return refOf(accountId, resource).fields;
  return backend.changePlan(env, refOf(accountId, resource), saga.previous_plan);
}

/** After a paid renewal (which lifts a suspension): the backend's new fields (a domain's next expiry), or null if it keeps none. */
export async function renewAtBackend(env: ProviderBindings, accountId: string, resource: Resource): Promise<Record<string, unknown> | null> {
  const backend = backendFor(resource.service);
  if (!backend?.renew || resource.renews_at === null) return null;
  return backend.renew(env, refOf(accountId, resource), new Date(resource.renews_at));
}

/** §3.2: a renewal refused by a limit suspends the resource; the backend stops what it costs to run. */
export async function suspendAtBackend(env: ProviderBindings, accountId: string, resource: Resource): Promise<void> {
  await backendFor(resource.service)?.suspend?.(env, refOf(accountId, resource));
}

// ── After the saga: delete and rotate (§3.1 "Also") ───────────────────────

export function refRefusal(result: { code: string; detail: string }): ProblemError {
  return result.code === 'not_found' ? new ProblemError(404, 'not_found', result.detail) : new ProblemError(409, 'invalid_request', result.detail);
}

/** The services whose scopes the token holds (no I/O: the catalog and the token say it). */
export function servicesInScope(env: ProviderBindings, claims: AccessTokenClaims): string[] {
  return publishedCatalog(providerConfig(env))
    .catalog.services.filter((s) => s.scopes.every((scope) => claims.scope.includes(scope)))
    .map((s) => s.id);
}

const scopeRefusal = (serviceId: string) => new ProblemError(403, 'insufficient_scope', `This token lacks the scopes of ${serviceId}.`);

export function serviceScopeCheck(env: ProviderBindings, claims: AccessTokenClaims, serviceId: string) {
  if (!servicesInScope(env, claims).includes(serviceId)) throw scopeRefusal(serviceId);
}

/**
 * DELETE: the ledger marks the resource deleted (renewals stop) and owes the
 * backend a deprovision; the backend runs now so serving and credentials stop
 * at once, and the ledger's alarm retries it if it fails.
 */
export async function deleteResource(env: ProviderBindings, claims: AccessTokenClaims, resourceId: string) {
  const ledger = ledgerOf(env, claims.account_id);
  const actor = { type: 'agent' as const, id: claims.agent_id };
  // The scope is checked in the ledger's transaction, against the resource it reads there: one call, nothing changed on a refusal.
  const begun = await ledger.beginDeprovision(claims.account_id, resourceId, actor, servicesInScope(env, claims));
  if (!begun.ok) throw begun.code === 'insufficient_scope' ? scopeRefusal(begun.detail) : refRefusal(begun);
  const resource = begun.resource as Resource;
  if (!begun.already) {
    try {
      await deprovision(env, claims.account_id, { service: resource.service, resource_id: resource.id });
      await ledger.confirmDeprovision(claims.account_id, resourceId);
    } catch (error) {
      // Owed in the ledger's outbox: the alarm retries until the backend confirms.
      await ledger.deprovisionDeferred(claims.account_id, resourceId, String(error));
    }
  }
  return { ...resourceWire(resource), audit_event_id: begun.event_id };
}

/** POST /rotate: new credentials from the backend, shown once; the old ones are dead when this returns. */
export async function rotateResource(env: ProviderBindings, claims: AccessTokenClaims, resourceId: string) {
  const ledger = ledgerOf(env, claims.account_id);
  const actor = { type: 'agent' as const, id: claims.agent_id };
  const checked = await ledger.checkRotatable(claims.account_id, resourceId, actor);
  if (!checked.ok) throw refRefusal(checked);
  const resource = checked.resource as Resource;
  serviceScopeCheck(env, claims, resource.service);
  const backend = backendFor(resource.service);
  if (!backend?.rotate) throw new ProblemError(422, 'invalid_request', `${resource.service} issues no credentials to rotate.`);
  const rotated = await backend.rotate(env, {
    resource_id: resource.id,
    account_id: claims.account_id,
    service: resource.service,
    plan: resource.plan,
    fields: resource.fields ? (JSON.parse(resource.fields) as Record<string, unknown>) : {},
  });
  const updated = (await ledger.recordRotation(claims.account_id, resourceId, JSON.stringify(rotated.fields), actor)) as { resource: Resource; event_id: string } | null;
  if (!updated) {
    // Deleted while rotating: the new credentials must not outlive it.
    await deprovision(env, claims.account_id, { service: resource.service, resource_id: resource.id }).catch(() => undefined);
    throw new ProblemError(404, 'not_found', 'The resource was deleted.');
  }
  return { resource: { ...resourceWire(updated.resource), audit_event_id: updated.event_id }, credentials: rotated.credentials };
}
