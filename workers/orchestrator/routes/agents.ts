// Agents (PROTOCOL.md §2.1): registered, listed and revoked by their principal.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { acceptBody, type RoleEnv } from '../../lib/app';
import { paginate, ListQuerySchema } from '../../lib/pagination';
import { problemResponses } from '../../lib/problem';
import { AgentSchema, RegisterAgentSchema } from '../../lib/schemas/mandates';
import type { SessionVariables } from '../../lib/sessions';
import { listAgents, registerAgent, revokeAgent } from '../agents';
import type { OrchestratorBindings } from '../env';
import { principalIdempotent } from '../idempotent';
import { principalSession } from '../session';
import { decisionResponse } from './decisions';

type Env = RoleEnv<OrchestratorBindings> & { Variables: SessionVariables };
const AgentId = z.object({ id: z.string().startsWith('agt_') });

export function agentRoutes() {
  const app = new OpenAPIHono<Env>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/agents',
      summary: 'Register an agent key; the DPoP header must hold a proof signed by that key',
      middleware: [principalSession, acceptBody('json'), principalIdempotent] as const,
      request: {
        headers: z.object({ dpop: z.string().optional().openapi({ description: 'RFC 9449 proof (htm POST, htu this URL) signed by public_jwk' }) }),
        body: { required: true, content: { 'application/json': { schema: RegisterAgentSchema } } },
      },
      responses: {
        201: { description: 'Registered', content: { 'application/json': { schema: AgentSchema } } },
        ...problemResponses(400, 401, 403, 409, 415, 422),
      },
    }),
    async (c) => {
      const agent = await registerAgent(c.env, c.get('session').subject_id, c.req.valid('json'), {
        header: c.req.header('dpop'),
        method: c.req.method,
        path: c.req.path,
      });
      return c.json(agent, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/agents',
      summary: "The principal's agents",
      middleware: [principalSession] as const,
      request: { query: ListQuerySchema },
      responses: {
        200: { description: 'Agents', content: { 'application/json': { schema: z.object({ data: z.array(AgentSchema), has_more: z.boolean() }) } } },
        ...problemResponses(401, 422),
      },
    }),
    async (c) => c.json(paginate(await listAgents(c.env, c.get('session').subject_id), c.req.valid('query'), (a) => a.agent_id), 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/agents/{id}/revoke',
      summary: 'Revoke an agent: its mandates end and providers are told at once',
      middleware: [principalSession, principalIdempotent] as const,
      request: { params: AgentId },
      responses: {
        200: { description: 'Revoked', content: { 'application/json': { schema: AgentSchema } } },
        303: { description: 'Form post: to the page that shows it' },
        ...problemResponses(400, 401, 403, 404, 409),
      },
    }),
    async (c) => decisionResponse(c, await revokeAgent(c.env, c.get('session').subject_id, c.req.valid('param').id), '/dashboard/agents') as never,
  );

  return app;
}
