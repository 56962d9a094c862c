// POST /v1/events: security events pushed by trusted orchestrators (PROTOCOL.md §2.5).
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { RoleEnv } from '../../lib/app';
import { ProblemError, problemResponses } from '../../lib/problem';
import type { ProviderBindings } from '../env';
import { receiveSecurityEvent } from '../security-events';

export function eventRoutes() {
  const app = new OpenAPIHono<RoleEnv<ProviderBindings>>();
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/events',
      summary: 'Receive a Security Event Token (RFC 8417) from a trusted orchestrator; 202 acknowledges it',
      request: { body: { required: true, content: { 'application/secevent+jwt': { schema: z.string() } } } },
      responses: {
        202: { description: 'Acknowledged', content: { 'application/json': { schema: z.object({ applied: z.array(z.string()), duplicate: z.boolean() }) } } },
        ...problemResponses(400, 401, 403, 415),
      },
    }),
    async (c) => {
      const type = (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/secevent+jwt') throw new ProblemError(415, 'unsupported_media_type', 'The body must be application/secevent+jwt.');
      // A compact JWS is ASCII: decoded from bytes, since workerd warns on every .text() of a body typed as not text.
      const set = new TextDecoder().decode(await c.req.arrayBuffer()).trim();
      return c.json(await receiveSecurityEvent(c.env, set), 202);
    },
  );
  return app;
}
