// Resources (PROTOCOL.md §3.1): provisioned through the governed saga, read,
// listed; async services answer with an operation to poll; usage this period.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { acceptBody, type RoleEnv } from '../../lib/app';
import { IDEMPOTENCY_RECORD, IDEMPOTENCY_RECORDED, REPLAY_BODY, type IdempotencyRecord } from '../../lib/idempotency';
import { paginate, ListQuerySchema } from '../../lib/pagination';
import { ProblemError, problemResponses } from '../../lib/problem';
import { OperationSchema, PlanChangedSchema, PlanChangeSchema, ProvisionedSchema, ResourceChangedSchema, ResourceRequestSchema, ResourceSchema, UsageSchema } from '../../lib/schemas/resources';
import type { Resource } from '../../../durable-objects/ledger/sagas';
import { ledgerOf, type ProviderBindings } from '../env';
import { changePlan } from '../plan-changes';
import { deleteResource, provisionResource, resourceWire, rotateResource } from '../provisioning';
import { auditRefusals, requireAccessToken, requireAgentSignature, requirePaidCallToken, type TokenVariables } from '../token-auth';

type Env = RoleEnv<ProviderBindings> & { Variables: TokenVariables };

const signatureHeaders = z.object({
  authorization: z.string().optional().openapi({ description: 'DPoP <access token>' }),
  dpop: z.string().optional(),
  'idempotency-key': z.string().optional().openapi({ description: 'Required: 1–255 characters' }),
  'content-digest': z.string().optional().openapi({ description: 'RFC 9530 sha-256 of the body' }),
  'signature-input': z.string().optional().openapi({ description: 'RFC 9421, tag="oap"' }),
  signature: z.string().optional(),
});
const tokenHeaders = z.object({ authorization: z.string().optional(), dpop: z.string().optional() });
const resourceParam = z.object({ id: z.string().startsWith('res_') });


export function resourceRoutes() {
  const app = new OpenAPIHono<Env>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/resources',
      summary: 'Provision a resource, paid through the principal’s orchestrator (signed, idempotent)',
      middleware: [requirePaidCallToken, auditRefusals('resource.provision'), requireAgentSignature, acceptBody('json')] as const,
      request: { headers: signatureHeaders, body: { required: true, content: { 'application/json': { schema: ResourceRequestSchema } } } },
      responses: {
        201: { description: 'Provisioned and charged', content: { 'application/json': { schema: ProvisionedSchema } } },
        202: { description: 'Accepted: an async service; poll the operation', content: { 'application/json': { schema: OperationSchema } } },
        ...problemResponses(400, 401, 402, 403, 409, 415, 422, 503),
      },
    }),
    async (c) => {
      const token = c.get('token');
      const signature = c.get('signature');
      const record = c.get(IDEMPOTENCY_RECORD as never) as IdempotencyRecord;
      const outcome = await provisionResource(c.env, token, c.req.valid('json'), signature.signed as never, signature.base, c.req.header('idempotency-key')!, record);
      if (outcome.kind === 'accepted') return c.json({ operation_id: outcome.operation_id, status: 'pending' as const, audit_event_id: outcome.audit_event_id }, 202, { Location: `/v1/operations/${outcome.operation_id}` });
      const body = { ...outcome.resource, credentials: outcome.credentials, charge_id: outcome.charge_id, audit_event_id: outcome.audit_event_id, receipt: outcome.receipt };
      // An idempotent replay never carries credentials (§3.1); the saga's completion stored it already, or the middleware stores it now.
      if (outcome.recorded) c.set(IDEMPOTENCY_RECORDED as never, true as never);
      else c.set(REPLAY_BODY as never, { ...body, credentials: null, credentials_redacted: outcome.credentials !== null } as never);
      return c.json(body as z.infer<typeof ProvisionedSchema>, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/resources',
      summary: 'The account’s resources, newest first',
      middleware: [requireAccessToken] as const,
      request: {
        headers: tokenHeaders,
        query: ListQuerySchema.extend({
          mandate_id: z.string().optional().openapi({ description: 'Only what was provisioned under this mandate' }),
          status: z.enum(['active', 'suspended', 'deleted', 'provisioning']).optional(),
        }),
      },
      responses: {
        200: { description: 'Resources', content: { 'application/json': { schema: z.object({ data: z.array(ResourceSchema), has_more: z.boolean() }) } } },
        ...problemResponses(401, 422),
      },
    }),
    async (c) => {
      const query = c.req.valid('query');
      const resources = ((await ledgerOf(c.env, c.get('token').account_id).listResources()) as Resource[])
        .filter((r) => (!query.mandate_id || r.mandate_id === query.mandate_id) && (!query.status || r.status === query.status))
        .map((r) => ({ ...resourceWire(r), resource_id: r.id, mandate_id: r.mandate_id, agent_id: r.agent_id }));
      return c.json(paginate(resources, query, (r) => String(r.resource_id)) as never, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/resources/{id}',
      summary: 'One resource (never its credentials)',
      middleware: [requireAccessToken] as const,
      request: { headers: tokenHeaders, params: resourceParam },
      responses: { 200: { description: 'The resource', content: { 'application/json': { schema: ResourceSchema } } }, ...problemResponses(401, 404) },
    }),
    async (c) => {
      const resource = (await ledgerOf(c.env, c.get('token').account_id).getResource(c.req.valid('param').id)) as Resource | null;
      if (!resource || resource.status === 'failed') throw new ProblemError(404, 'not_found', 'No such resource.');
      return c.json(resourceWire(resource) as never, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/v1/resources/{id}',
      summary: 'Deprovision: serving stops, credentials die, storage is deleted, recurring billing stops (signed, idempotent)',
      middleware: [requirePaidCallToken, auditRefusals('resource.deprovision'), requireAgentSignature] as const,
      request: { headers: signatureHeaders, params: resourceParam },
      responses: { 200: { description: 'The resource, now deleted', content: { 'application/json': { schema: ResourceChangedSchema } } }, ...problemResponses(400, 401, 403, 404, 409) },
    }),
    async (c) => c.json((await deleteResource(c.env, c.get('token'), c.req.valid('param').id)) as z.infer<typeof ResourceChangedSchema>, 200),
  );

  app.openapi(
    createRoute({
      method: 'patch',
      path: '/v1/resources/{id}',
      summary: 'Change a recurring plan along allowed_updates, charged or credited pro rata through the principal’s orchestrator (signed, idempotent)',
      middleware: [requirePaidCallToken, auditRefusals('resource.update'), requireAgentSignature, acceptBody('json')] as const,
      request: { headers: signatureHeaders, params: resourceParam, body: { required: true, content: { 'application/json': { schema: PlanChangeSchema } } } },
      responses: {
        200: { description: 'The resource on its new plan, with what was charged or credited', content: { 'application/json': { schema: PlanChangedSchema } } },
        ...problemResponses(400, 401, 402, 403, 404, 409, 415, 422, 503),
      },
    }),
    async (c) => {
      const token = c.get('token');
      const signature = c.get('signature');
      const changed = await changePlan(c.env, token, c.req.valid('param').id, c.req.valid('json'), signature.signed as never, signature.base, c.req.header('idempotency-key')!);
      const body = { ...changed.resource, charge_id: changed.charge_id, charged: changed.charged, credited: changed.credited, audit_event_id: changed.audit_event_id, receipt: changed.receipt };
      return c.json(body as z.infer<typeof PlanChangedSchema>, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/resources/{id}/rotate',
      summary: 'New credentials, shown in this response only; the old ones stop working at once (signed, idempotent)',
      middleware: [requirePaidCallToken, auditRefusals('resource.rotate'), requireAgentSignature] as const,
      request: { headers: signatureHeaders, params: resourceParam },
      responses: { 200: { description: 'The resource with its new credentials', content: { 'application/json': { schema: ResourceChangedSchema } } }, ...problemResponses(400, 401, 403, 404, 409, 422) },
    }),
    async (c) => {
      const { resource, credentials } = await rotateResource(c.env, c.get('token'), c.req.valid('param').id);
      // A replay of the rotation never shows the credentials again (§3.1).
      c.set(REPLAY_BODY as never, { ...resource, credentials: null, credentials_redacted: credentials !== null } as never);
      return c.json({ ...resource, credentials } as z.infer<typeof ResourceChangedSchema>, 200, { 'cache-control': 'no-store' });
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/operations/{id}',
      summary: 'An async provisioning operation; the first read after success carries the credentials',
      middleware: [requireAccessToken] as const,
      request: { headers: tokenHeaders, params: z.object({ id: z.string().startsWith('op_') }) },
      responses: { 200: { description: 'The operation', content: { 'application/json': { schema: OperationSchema } } }, ...problemResponses(401, 404) },
    }),
    async (c) => {
      const token = c.get('token');
      const read = await ledgerOf(c.env, token.account_id).readOperation(token.account_id, c.req.valid('param').id, token.agent_id);
      if (!read) throw new ProblemError(404, 'not_found', 'No such operation.');
      const { saga, resource, credentials } = read;
      if (saga.state === 'completed' && resource) {
        return c.json({ operation_id: saga.id, status: 'succeeded' as const, charge_id: saga.charge_id, resource: { ...resourceWire(resource as Resource), credentials: credentials ? JSON.parse(credentials) : null, ...(credentials ? {} : { credentials_redacted: true }) } } as never, 200, { 'cache-control': 'no-store' });
      }
      if (saga.state === 'voided') return c.json({ operation_id: saga.id, status: 'failed' as const, charge_id: saga.charge_id, error: { code: 'provision_failed', message: saga.error ?? 'failed' } }, 200);
      return c.json({ operation_id: saga.id, status: 'pending' as const, charge_id: saga.charge_id }, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/usage',
      summary: 'Spend this period at this provider, by service, against the account’s limit',
      middleware: [requireAccessToken] as const,
      request: { headers: tokenHeaders },
      responses: { 200: { description: 'Usage', content: { 'application/json': { schema: UsageSchema } } }, ...problemResponses(401) },
    }),
    async (c) => {
      const ledger = ledgerOf(c.env, c.get('token').account_id);
      const [limit, spent, services] = await Promise.all([ledger.ownLimit(), ledger.spentThisPeriod(), ledger.usageThisPeriod()]);
      return c.json(
        {
          period: new Date().toISOString().slice(0, 7),
          limit,
          spent: { amount: spent, currency: limit.currency },
          services: services.map((s) => ({ service: s.service, spent: { amount: s.amount, currency: limit.currency } })),
        },
        200,
      );
    },
  );

  return app;
}
