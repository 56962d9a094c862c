// Discovery at the orchestrator (PROTOCOL.md §1).
import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import type { RoleEnv } from '../../lib/app';
import { OrchestratorDiscoverySchema, PROTOCOL_VERSION } from '../../lib/schemas/discovery';
import { orchestratorConfig, type OrchestratorBindings } from '../env';

const discoveryRoute = createRoute({
  method: 'get',
  path: '/.well-known/agent-provisioning',
  summary: 'Where everything of this orchestrator is',
  responses: {
    200: { description: 'The orchestrator discovery document', content: { 'application/json': { schema: OrchestratorDiscoverySchema } } },
  },
});

export function discoveryRoutes() {
  const app = new OpenAPIHono<RoleEnv<OrchestratorBindings>>();
  app.openapi(discoveryRoute, (c) => {
    const config = orchestratorConfig(c.env);
    const base = config.PUBLIC_BASE_URL;
    return c.json(
      {
        protocol: PROTOCOL_VERSION,
        role: 'orchestrator' as const,
        id: config.ORCHESTRATOR_ID,
        name: config.ORCHESTRATOR_NAME,
        issuer: base,
        jwks_uri: `${base}/.well-known/jwks.json`,
        mandates_endpoint: `${base}/v1/mandates`,
        attestations_endpoint: `${base}/v1/attestations`,
        charges_endpoint: `${base}/v1/charges`,
        openapi: `${base}/openapi.json`,
        providers: config.PROVIDERS.map((p) => p.url),
      },
      200,
      { 'cache-control': 'public, max-age=300' },
    );
  });
  return app;
}
