// The provider Worker's routes. One codebase serves every provider instance;
// the instance's id, catalog and trust list are configuration.
import { createRoleApp, serveOpenApiDocument } from '../lib/app';
import { auditRoutes } from '../lib/routes/audit';
import { jwksRoutes } from '../lib/routes/jwks';
import { ProblemError } from '../lib/problem';
import { providerConfig, type ProviderBindings } from './env';
import { discoveryRoutes } from './routes/discovery';

export function createProviderApp() {
  const app = createRoleApp<ProviderBindings>();
  app.route('/', discoveryRoutes());
  app.route('/', jwksRoutes());
  app.route(
    '/',
    auditRoutes(async () => {
      // Access tokens arrive with the authorization issue (PROTOCOL.md §2.3); until then no caller can read a trail.
      throw new ProblemError(401, 'invalid_token', 'A DPoP-bound access token is required.', {}, { 'WWW-Authenticate': 'DPoP algs="EdDSA Ed25519"' });
    }),
  );
  serveOpenApiDocument(app, { title: 'OAP provider', version: '2026-11', description: 'An Open Agent Provisioning provider.' }, (c) =>
    providerConfig(c.env as ProviderBindings).PUBLIC_BASE_URL,
  );
  return app;
}
