// The charges API (PROTOCOL.md §3.1 step 3 and §3.2): providers authorize,
// capture, void and (in part, for plan changes) refund; principals read their charges.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { createMiddleware } from 'hono/factory';
import type { RoleEnv } from '../../lib/app';
import { paginate, ListQuerySchema } from '../../lib/pagination';
import { ProblemError, problemResponses } from '../../lib/problem';
import { ChargeRequestSchema, ChargeSchema, RefundRequestSchema } from '../../lib/schemas/charges';
import { readSession, type Session } from '../../lib/sessions';
import { authorizeCharge, chargeRoute, findProviderCharge, refundCharge, resolveCharge, toChargeWire } from '../charges';
import { ledgerOf, sessionConfigOf, type OrchestratorBindings } from '../env';
import { authenticateProvider, useUpReadToken, type ProviderCaller } from '../provider-auth';

type Caller = { kind: 'provider'; token: ProviderCaller } | { kind: 'principal'; session: Session };
type Env = RoleEnv<OrchestratorBindings> & { Variables: { provider: ProviderCaller; caller: Caller } };
const ChargeId = z.object({ id: z.string().startsWith('chg_') });
const providerAuth = z.object({ authorization: z.string().optional().openapi({ description: 'Bearer <oap-provider+jwt>: the provider’s request token (§3.1)' }) });
const ResolveChargeSchema = z
  .object({ receipt: z.string().optional(), reason: z.string().max(200).optional(), provider_audit_event_id: z.string().optional() })
  .openapi('ChargeResolution');
const declined = {
  402: {
    description: 'Declined: spend_limit_exceeded (with limit, spent, requested, step_up_url), mandate_inactive, out_of_scope or velocity_limited',
    content: { 'application/problem+json': { schema: z.object({ code: z.string(), limit: z.unknown().optional(), spent: z.unknown().optional(), requested: z.unknown().optional(), step_up_url: z.string().optional() }).passthrough() } },
  },
};

/**
 * As route middleware, before the route's validators (PROTOCOL.md Conventions): the provider, by its token over
 * the body, read once as text. A charge's token is used up in the principal's ledger, with the decision it asks for.
 */
const authenticatedProvider = createMiddleware<Env>(async (c, next) => {
  c.set('provider', await authenticateProvider(c, await c.req.text()));
  await next();
});

/** Reads: the provider that made the charge (its token used up here) or the principal it is for (a session). */
const providerOrPrincipal = createMiddleware<Env>(async (c, next) => {
  if (c.req.header('authorization')) {
    const token = await authenticateProvider(c, '');
    await useUpReadToken(c.env, token);
    c.set('caller', { kind: 'provider', token });
  } else {
    const session = await readSession(c, c.env.DB, sessionConfigOf(c.env));
    if (!session) throw new ProblemError(401, 'unauthorized', 'Sign in first.');
    c.set('caller', { kind: 'principal', session });
  }
  await next();
});

export function chargeRoutes() {
  const app = new OpenAPIHono<Env>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/charges',
      summary: 'Authorize a charge for what an agent signed for (provider-authenticated)',
      middleware: [authenticatedProvider] as const,
      request: { headers: providerAuth, body: { required: true, content: { 'application/json': { schema: ChargeRequestSchema } } } },
      responses: {
        201: { description: 'Authorized: a hold on every limit until captured or voided', content: { 'application/json': { schema: ChargeSchema } } },
        ...declined,
        // 409 renewal_not_due: a renewal asked before the renewed charge's period ends (Retry-After says when).
        ...problemResponses(400, 401, 404, 409, 415, 422, 503),
      },
    }),
    async (c) => {
      const charge = await authorizeCharge(c.env, c.get('provider'), c.req.valid('json'));
      return c.json(charge, 201, { Location: `/v1/charges/${charge.charge_id}` });
    },
  );

  for (const action of ['capture', 'void'] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/v1/charges/{id}/${action}`,
        summary: action === 'capture' ? 'Capture an authorized charge (once; 409 charge_voided after a void)' : 'Void an authorized charge, releasing the hold',
        middleware: [authenticatedProvider] as const,
        request: { params: ChargeId, headers: providerAuth, body: { required: false, content: { 'application/json': { schema: ResolveChargeSchema } } } },
        responses: { 200: { description: 'The charge', content: { 'application/json': { schema: ChargeSchema } } }, ...problemResponses(400, 401, 404, 409, 415, 422) },
      }),
      async (c) => {
        const { receipt, reason, provider_audit_event_id: eventId } = c.req.valid('json');
        return c.json(
          await resolveCharge(c.env, c.get('provider'), c.req.valid('param').id, action, {
            receipt,
            reason,
            provider_audit_event_id: eventId?.startsWith('evt_') ? eventId : undefined,
          }),
          200,
        );
      },
    );
  }

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/charges/{id}/refund',
      summary: 'Give back part of a captured charge, e.g. a downgrade’s pro-rata credit (provider-authenticated; once per idempotency_key; 409 beyond what remains)',
      // The provider is authenticated before its body is validated (PROTOCOL.md Conventions).
      middleware: [authenticatedProvider] as const,
      request: { params: ChargeId, headers: providerAuth, body: { required: true, content: { 'application/json': { schema: RefundRequestSchema } } } },
      responses: { 200: { description: 'The charge, with amount_refunded', content: { 'application/json': { schema: ChargeSchema } } }, ...problemResponses(400, 401, 404, 409, 415, 422) },
    }),
    async (c) => c.json(await refundCharge(c.env, c.get('provider'), c.req.valid('param').id, c.req.valid('json')), 200),
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/charges/{id}',
      summary: 'A charge: for its principal (session) or the provider that made it',
      middleware: [providerOrPrincipal] as const,
      request: { params: ChargeId, headers: providerAuth },
      responses: { 200: { description: 'The charge', content: { 'application/json': { schema: ChargeSchema } } }, ...problemResponses(401, 404, 422) },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const route = await chargeRoute(c.env, id);
      const caller = c.get('caller');
      const owner = caller.kind === 'provider' ? route?.provider_id === caller.token.provider.id : route?.principal_id === caller.session.subject_id;
      if (!route || !owner) throw new ProblemError(404, 'not_found', 'No such charge.');
      const hold = await ledgerOf(c.env, route.principal_id).getCharge(id);
      if (!hold) throw new ProblemError(404, 'not_found', 'No such charge.');
      return c.json(toChargeWire(hold), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/charges',
      summary: "The principal's charges, newest first; for a provider, its charge for a principal by idempotency key",
      middleware: [providerOrPrincipal] as const,
      request: {
        headers: providerAuth,
        query: ListQuerySchema.extend({
          provider: z.string().optional(),
          agent: z.string().optional(),
          mandate: z.string().optional(),
          period: z.string().regex(/^\d{4}-\d{2}$/).optional().openapi({ description: 'YYYY-MM (UTC)' }),
          principal_sub: z.string().min(1).max(200).optional().openapi({ description: 'Provider callers: the principal’s pairwise subject at the provider' }),
          idempotency_key: z.string().min(1).max(255).optional().openapi({ description: 'Provider callers: the idempotency_key the charge was authorized with' }),
        }),
      },
      responses: {
        200: { description: 'Charges', content: { 'application/json': { schema: z.object({ data: z.array(ChargeSchema), has_more: z.boolean() }) } } },
        ...problemResponses(401, 422),
      },
    }),
    async (c) => {
      const q = c.req.valid('query');
      const caller = c.get('caller');
      if (caller.kind === 'provider') {
        // A provider whose authorization answer was lost finds the charge by its key, to void it (§3.1 step 4).
        if (!q.principal_sub || !q.idempotency_key) throw new ProblemError(422, 'invalid_request', 'A provider names the charge by principal_sub and idempotency_key.');
        return c.json({ data: await findProviderCharge(c.env, caller.token, q.principal_sub, q.idempotency_key), has_more: false }, 200);
      }
      const holds = await ledgerOf(c.env, caller.session.subject_id).listCharges({ provider: q.provider, agent_id: q.agent, mandate_id: q.mandate, period: q.period });
      return c.json(paginate(holds.map(toChargeWire), q, (ch) => ch.charge_id), 200);
    },
  );

  return app;
}
