// Budget alerts as the principal reads them, and the webhook endpoints they
// are delivered to (PROTOCOL.md §3.2, "Webhooks").
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { acceptBody, type RoleEnv } from '../../lib/app';
import { REPLAY_BODY } from '../../lib/idempotency';
import { randomToken } from '../../lib/jws';
import { paginate, ListQuerySchema } from '../../lib/pagination';
import { ProblemError, problemResponses } from '../../lib/problem';
import { humanOnly } from '../../lib/routes/limits';
import { NotificationSchema } from '../../lib/schemas/charges';
import type { Session } from '../../lib/sessions';
import { webhookUrlProblem } from '../../lib/webhooks';
import { ledgerOf, orchestratorConfig, sessionConfigOf, type OrchestratorBindings } from '../env';
import { principalIdempotent } from '../idempotent';

const human = humanOnly({ db: (env: OrchestratorBindings) => env.DB, config: sessionConfigOf, ledgerOf });

export function notificationRoutes() {
  const app = new OpenAPIHono<RoleEnv<OrchestratorBindings> & { Variables: { session: Session } }>();

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/notifications',
      summary: 'Budget alerts and other notices, newest first',
      middleware: [human] as const,
      request: { query: ListQuerySchema },
      responses: {
        200: { description: 'Notifications', content: { 'application/json': { schema: z.object({ data: z.array(NotificationSchema), has_more: z.boolean() }) } } },
        ...problemResponses(401, 403),
      },
    }),
    async (c) => {
      const all = (await ledgerOf(c.env, c.get('session').subject_id).listNotifications()) as z.infer<typeof NotificationSchema>[];
      return c.json(paginate(all, c.req.valid('query'), (n) => n.id), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/webhook_endpoints',
      summary: 'Add an endpoint for signed webhooks; the secret is shown once',
      middleware: [human, acceptBody('json'), principalIdempotent] as const,
      request: { body: { required: true, content: { 'application/json': { schema: z.object({ url: z.string().max(2048) }).openapi('NewWebhookEndpoint') } } } },
      responses: {
        201: {
          description: 'Created (a replay by Idempotency-Key answers with secret null and secret_redacted)',
          content: { 'application/json': { schema: z.object({ id: z.string(), url: z.string(), secret: z.string().nullable(), secret_redacted: z.boolean().optional() }).openapi('WebhookEndpoint') } },
        },
        ...problemResponses(400, 401, 403, 409, 415, 422),
      },
    }),
    async (c) => {
      const { url } = c.req.valid('json');
      const problem = webhookUrlProblem(url, orchestratorConfig(c.env).DEV_SEED);
      if (problem) throw new ProblemError(422, 'invalid_request', `This endpoint is refused: ${problem}.`, { errors: [{ path: '/url', message: problem }] });
      const endpoint = { id: `whk_${randomToken(12)}`, url, secret: `whsec_${randomToken(24)}` };
      await ledgerOf(c.env, c.get('session').subject_id).addWebhookEndpoint(c.get('session').subject_id, endpoint);
      // The secret is shown once: an Idempotency-Key replay answers without it (records never keep credentials).
      c.set(REPLAY_BODY as never, { ...endpoint, secret: null, secret_redacted: true } as never);
      return c.json(endpoint, 201, { 'cache-control': 'no-store' });
    },
  );

  return app;
}
