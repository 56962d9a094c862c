// PATCH /v1/resources/{id} (PROTOCOL.md §3.1 "Also"): a recurring resource
// moves to another plan along its plan's `allowed_updates`, charged or credited
// pro rata through the same charge path as POST. The ledger side of the saga is
// durable-objects/ledger/plan-changes.ts.
import { newId } from '../lib/ids';
import { ProblemError } from '../lib/problem';
import type { Money } from '../lib/schemas/money';
import type { Resource, Saga } from '../../durable-objects/ledger/sagas';
import { publishedCatalog } from './catalog';
import { ledgerOf, providerConfig, type ProviderBindings } from './env';
import type { AccessTokenClaims } from './oauth/access-tokens';
import { recordedAlready } from './refusals';
import { accountLimitsUrl, authorizeSaga, resourceWire, revertPlan, serviceScopeCheck, signReceipt, subjectOf, type SignedCall } from './provisioning';
import { backendFor } from './services';

export type PlanChangeRequest = { plan: string; expected_price: Money };
export type PlanChanged = { resource: Record<string, unknown>; charge_id: string; charged: Money; credited: Money; audit_event_id: string; receipt: string };

const planProblem = (message: string) => new ProblemError(422, 'invalid_parameters', message, { errors: [{ path: '/plan', message }] });

/** The catalog's word on the change: along allowed_updates, between recurring plans of one period, at the price the agent agreed to. */
function checkPlanChange(env: ProviderBindings, resource: Resource, request: PlanChangeRequest) {
  const service = publishedCatalog(providerConfig(env)).catalog.services.find((s) => s.id === resource.service);
  const current = service?.plans.find((p) => p.id === resource.plan);
  const target = service?.plans.find((p) => p.id === request.plan);
  if (!current || !target || target.id === current.id || !current.allowed_updates.includes(target.id)) {
    throw planProblem(`${resource.plan} can change to: ${current?.allowed_updates.join(', ') || 'no other plan'}.`);
  }
  // Pro rata needs one billing period on both sides.
  if (current.billing === 'one_time' || target.billing !== current.billing) throw planProblem('Only a recurring plan changes, to one billed over the same period.');
  if (request.expected_price.amount !== target.price.amount || request.expected_price.currency !== target.price.currency) {
    throw new ProblemError(409, 'price_changed', `The price of ${target.id} is now ${target.price.amount} ${target.price.currency}.`, { price: target.price });
  }
  return { from: { plan: current.id, price: current.price }, to: { plan: target.id, price: target.price } };
}

function ledgerRefusal(refusal: { code: string; detail: string; limit?: Money; spent?: Money; requested?: Money }, env: ProviderBindings): ProblemError {
  switch (refusal.code) {
    case 'not_found':
      return new ProblemError(404, 'not_found', refusal.detail);
    case 'invalid_parameters':
      return planProblem(refusal.detail);
    case 'spend_limit_exceeded':
      // The ledger recorded this one (the account's limit), with the hold it refused; its other refusals, the route.
      return recordedAlready(new ProblemError(402, 'spend_limit_exceeded', refusal.detail, { limit: refusal.limit, spent: refusal.spent, requested: refusal.requested, step_up_url: accountLimitsUrl(env) }));
    default:
      return new ProblemError(409, 'invalid_request', refusal.detail);
  }
}

export async function changePlan(
  env: ProviderBindings,
  claims: AccessTokenClaims,
  resourceId: string,
  request: PlanChangeRequest,
  signed: SignedCall,
  signatureBase: string,
  idempotencyKey: string,
): Promise<PlanChanged> {
  const ledger = ledgerOf(env, claims.account_id);
  const resource = (await ledger.getResource(resourceId)) as Resource | null;
  if (!resource || resource.status === 'failed' || resource.status === 'deleted' || resource.agent_id !== claims.agent_id) throw new ProblemError(404, 'not_found', 'No such resource.');
  if (!claims.detail.services.includes(resource.service)) throw new ProblemError(403, 'insufficient_scope', `The mandate does not allow ${resource.service}.`);
  serviceScopeCheck(env, claims, resource.service);
  // Keyed by path too: the same Idempotency-Key on another call is another saga.
  const requestKey = `${claims.account_id}:${claims.agent_id} PATCH ${resourceId} ${idempotencyKey}`;
  // A retry after its Idempotency-Key record was lost finds the resource already changed: its first outcome, before any check.
  const started = (await ledger.liveSagaFor(requestKey)) as Saga | null;
  if (started) return alreadyChanged(env, claims.account_id, started);
  if (resource.status !== 'active') throw new ProblemError(409, 'invalid_request', `The resource is ${resource.status}.`);
  const { from, to } = checkPlanChange(env, resource, request);
  const backend = backendFor(resource.service);
  if (!backend?.changePlan) throw planProblem(`${resource.service} cannot change plan here.`);

  const sagaId = newId('op');
  const begun = await ledger.beginUpdate(claims.account_id, {
    saga_id: sagaId,
    hold_id: `hld_${sagaId.slice(3)}`,
    resource_id: resourceId,
    agent_id: claims.agent_id,
    mandate_id: claims.detail.mandate_id,
    orchestrator: claims.orchestrator,
    principal_sub: await subjectOf(env, claims),
    token_jti: claims.jti,
    from,
    to,
    request: JSON.stringify({ ...signed, signature_base: signatureBase }),
    request_key: requestKey,
  });
  if (!begun.ok && begun.existing) return alreadyChanged(env, claims.account_id, begun.existing as Saga);
  // The ledger recorded a refusal by the account's limit; its other refusals (a conflict) are recorded by the route.
  if (!begun.ok) throw ledgerRefusal(begun, env);

  // The orchestrator decides on the agent's signed PATCH; a downgrade is a $0 charge so that it holds that signature too.
  const saga = await authorizeSaga(env, claims, { begun, signed, description: `${resource.service}: ${from.plan} to ${to.plan}, pro rata`, unchanged: 'the plan is unchanged' });

  let fields: Record<string, unknown>;
  try {
    fields = await backend.changePlan(env, { resource_id: resourceId, account_id: claims.account_id, service: resource.service, plan: from.plan, fields: resource.fields ? (JSON.parse(resource.fields) as Record<string, unknown>) : {} }, to.plan);
  } catch {
    // It may have switched before failing: back, then nothing charged.
    await revertPlan(env, claims.account_id, saga, resource).catch(() => undefined);
    await ledger.voidSaga(claims.account_id, sagaId, 'change_failed');
    throw new ProblemError(502, 'internal_error', 'The plan change failed; the plan is unchanged and nothing was charged.');
  }
  const chargeId = saga.charge_id!;
  // A plan change pays for the rest of the current period: it ends where the plan renews, as it was priced.
  const receipt = await signReceipt(env, saga, chargeId, begun.renews_at);
  const completed = await ledger.completeUpdate(claims.account_id, sagaId, { fields: JSON.stringify(fields), receipt });
  if (!completed) {
    // Recovered by the alarm, or the resource was deleted, while the backend switched: undone, nothing charged.
    const now = (await ledger.getResource(resourceId)) as Resource | null;
    if (now?.status === 'active' && now.plan === from.plan) await revertPlan(env, claims.account_id, saga, now).catch(() => undefined);
    await ledger.voidSaga(claims.account_id, sagaId, 'resource_changed');
    // Recorded with the void, as the update's failure for this reason.
    throw recordedAlready(new ProblemError(409, 'invalid_request', 'The resource changed while its plan was being changed; the plan is unchanged and nothing was charged.'));
  }
  return {
    resource: resourceWire(completed.resource),
    charge_id: chargeId,
    charged: { amount: completed.saga.amount, currency: completed.saga.currency },
    credited: completed.credit,
    audit_event_id: completed.event.id,
    receipt,
  };
}

/** The same PATCH again, after its Idempotency-Key record was lost: the change it made, never a second charge. */
async function alreadyChanged(env: ProviderBindings, accountId: string, saga: Saga): Promise<PlanChanged> {
  const outcome = saga.kind === 'update' ? await ledgerOf(env, accountId).updateOutcome(saga) : null;
  if (!outcome?.ok || !saga.charge_id || !saga.audit_event_id) throw new ProblemError(409, 'idempotency_request_in_progress', 'This paid call is still being processed.', {}, { 'Retry-After': '1' });
  return {
    resource: resourceWire(outcome.resource as Resource),
    charge_id: saga.charge_id,
    charged: { amount: saga.amount, currency: saga.currency },
    credited: outcome.credit,
    audit_event_id: saga.audit_event_id,
    receipt: outcome.receipt,
  };
}
