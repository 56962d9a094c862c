// Attestations (PROTOCOL.md §2.2), asked for by agents.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { acceptBody, type RoleEnv } from '../../lib/app';
import { problemResponses } from '../../lib/problem';
import { AttestationRequestSchema, AttestationSchema } from '../../lib/schemas/mandates';
import { requireAgent, type AgentVariables } from '../agent-auth';
import { agentIdempotent } from '../idempotent';
import { REPLAY_BODY } from '../../lib/idempotency';
import { issueAttestation } from '../attestations';
import type { OrchestratorBindings } from '../env';

export function attestationRoutes() {
  const app = new OpenAPIHono<RoleEnv<OrchestratorBindings> & { Variables: AgentVariables }>();
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/attestations',
      summary: 'An identity assertion (ID-JAG) for one provider of an active mandate, single use, 300 s',
      middleware: [requireAgent('attestation.issue'), acceptBody('json'), agentIdempotent] as const,
      request: {
        headers: z.object({ dpop: z.string().optional() }),
        body: { required: true, content: { 'application/json': { schema: AttestationRequestSchema } } },
      },
      responses: {
        200: { description: 'Issued', content: { 'application/json': { schema: AttestationSchema } } },
        ...problemResponses(400, 401, 403, 404, 409, 415, 422),
      },
    }),
    async (c) => {
      const issued = await issueAttestation(c.env, c.get('agent'), c.req.valid('json'));
      // An attestation is a credential: an Idempotency-Key replay answers without it (records never keep credentials).
      c.set(REPLAY_BODY as never, { ...issued, attestation: null, attestation_redacted: true } as never);
      return c.json(issued, 200, { 'cache-control': 'no-store' });
    },
  );
  return app;
}
