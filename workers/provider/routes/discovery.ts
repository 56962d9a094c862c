// Discovery at a provider (PROTOCOL.md §1): the agent-provisioning document,
// the OAuth metadata of RFC 8414 and RFC 9728, and the catalog.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { CatalogSchema } from '../../lib/schemas/catalog';
import {
  AuthorizationServerMetadataSchema,
  PROTOCOL_VERSION,
  ProtectedResourceMetadataSchema,
  ProviderDiscoverySchema,
} from '../../lib/schemas/discovery';
import type { RoleEnv } from '../../lib/app';
import { ifNoneMatchHits, publishedCatalog } from '../catalog';
import { providerConfig, type ProviderBindings } from '../env';

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** RFC 9864 names Ed25519 fully; older clients still send EdDSA: both are accepted. */
export const SIGNING_ALGS = ['EdDSA', 'Ed25519'];

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  200: { description, content: { 'application/json': { schema } } },
});

const discoveryRoute = createRoute({
  method: 'get',
  path: '/.well-known/agent-provisioning',
  summary: 'Where everything of this provider is',
  responses: json(ProviderDiscoverySchema, 'The provider discovery document'),
});

const authorizationServerRoute = createRoute({
  method: 'get',
  path: '/.well-known/oauth-authorization-server',
  summary: 'RFC 8414 authorization server metadata',
  responses: json(AuthorizationServerMetadataSchema, 'Authorization server metadata'),
});

const protectedResourceRoute = createRoute({
  method: 'get',
  path: '/.well-known/oauth-protected-resource',
  summary: 'RFC 9728 protected resource metadata',
  responses: json(ProtectedResourceMetadataSchema, 'Protected resource metadata'),
});

const catalogRoute = createRoute({
  method: 'get',
  path: '/v1/catalog',
  summary: "The provider's services and plans, with the prices charged",
  request: { headers: z.object({ 'if-none-match': z.string().optional() }) },
  responses: {
    ...json(CatalogSchema, 'The catalog'),
    304: { description: 'The catalog has not changed since the ETag given' },
  },
});

export function discoveryRoutes() {
  const app = new OpenAPIHono<RoleEnv<ProviderBindings>>();

  app.openapi(discoveryRoute, (c) => {
    const config = providerConfig(c.env);
    const base = config.PUBLIC_BASE_URL;
    return c.json(
      {
        protocol: PROTOCOL_VERSION,
        role: 'provider' as const,
        id: config.PROVIDER_ID,
        name: config.PROVIDER_NAME,
        issuer: base,
        catalog_endpoint: `${base}/v1/catalog`,
        token_endpoint: `${base}/oauth/token`,
        resource_endpoint: `${base}/v1`,
        events_endpoint: `${base}/v1/events`,
        jwks_uri: `${base}/.well-known/jwks.json`,
        openapi: `${base}/openapi.json`,
        trusted_orchestrators: config.TRUSTED_ORCHESTRATORS,
      },
      200,
      { 'cache-control': 'public, max-age=300' },
    );
  });

  app.openapi(authorizationServerRoute, (c) => {
    const config = providerConfig(c.env);
    const base = config.PUBLIC_BASE_URL;
    return c.json(
      {
        issuer: base,
        token_endpoint: `${base}/oauth/token`,
        jwks_uri: `${base}/.well-known/jwks.json`,
        revocation_endpoint: `${base}/oauth/revoke`,
        introspection_endpoint: `${base}/oauth/introspect`,
        grant_types_supported: [JWT_BEARER_GRANT],
        // Agents are public clients: the attestation and the DPoP proof authenticate them.
        token_endpoint_auth_methods_supported: ['none'],
        dpop_signing_alg_values_supported: SIGNING_ALGS,
        authorization_details_types_supported: ['oap_mandate'],
        scopes_supported: scopesOf(config),
        response_types_supported: [],
        service_documentation: `${base}/openapi.json`,
      },
      200,
      { 'cache-control': 'public, max-age=300' },
    );
  });

  app.openapi(protectedResourceRoute, (c) => {
    const config = providerConfig(c.env);
    const base = config.PUBLIC_BASE_URL;
    return c.json(
      {
        resource: `${base}/v1`,
        authorization_servers: [base],
        jwks_uri: `${base}/.well-known/jwks.json`,
        scopes_supported: scopesOf(config),
        bearer_methods_supported: ['header'],
        dpop_signing_alg_values_supported: SIGNING_ALGS,
        dpop_bound_access_tokens_required: true,
        authorization_details_types_supported: ['oap_mandate'],
        resource_name: config.PROVIDER_NAME,
      },
      200,
      { 'cache-control': 'public, max-age=300' },
    );
  });

  app.openapi(catalogRoute, (c) => {
    const { body, etag } = publishedCatalog(providerConfig(c.env));
    const headers = { ETag: etag, 'Cache-Control': 'public, max-age=60, must-revalidate' };
    if (ifNoneMatchHits(c.req.header('if-none-match'), etag)) return c.body(null, 304, headers);
    return c.body(body, 200, { ...headers, 'content-type': 'application/json' }) as never;
  });

  return app;
}

function scopesOf(config: ReturnType<typeof providerConfig>): string[] {
  return [...new Set(publishedCatalog(config).catalog.services.flatMap((s) => s.scopes))].sort();
}
