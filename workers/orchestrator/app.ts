// The orchestrator Worker's routes: identity, payment and evidence for principals and their agents.
import { createRoleApp, serveOpenApiDocument } from '../lib/app';
import { ProblemError } from '../lib/problem';
import { auditRoutes } from '../lib/routes/audit';
import { jwksRoutes } from '../lib/routes/jwks';
import { orchestratorConfig, type OrchestratorBindings } from './env';
import { discoveryRoutes } from './routes/discovery';

export function createOrchestratorApp() {
  const app = createRoleApp<OrchestratorBindings>();
  app.route('/', discoveryRoutes());
  app.route('/', jwksRoutes());
  app.route(
    '/',
    auditRoutes(async () => {
      // Principal sessions and agent proofs arrive with the authorization issue (PROTOCOL.md §2.0, §2.4).
      throw new ProblemError(401, 'unauthorized', 'Sign in, or prove an agent key with a DPoP proof.');
    }),
  );
  serveOpenApiDocument(app, { title: 'OAP orchestrator', version: '2026-11', description: 'An Open Agent Provisioning orchestrator.' }, (c) =>
    orchestratorConfig(c.env as OrchestratorBindings).PUBLIC_BASE_URL,
  );
  return app;
}
