// Discovery documents (PROTOCOL.md §1, RFC 8414, RFC 9728).
import { z } from '@hono/zod-openapi';

export const PROTOCOL_VERSION = 'oap/2026-11';

const url = z.string().url();

export const ProviderDiscoverySchema = z
  .object({
    protocol: z.literal(PROTOCOL_VERSION),
    role: z.literal('provider'),
    id: z.string(),
    name: z.string(),
    issuer: url,
    catalog_endpoint: url,
    token_endpoint: url,
    resource_endpoint: url,
    events_endpoint: url,
    jwks_uri: url,
    openapi: url,
    trusted_orchestrators: z.array(url),
  })
  .openapi('ProviderDiscovery');

export const OrchestratorDiscoverySchema = z
  .object({
    protocol: z.literal(PROTOCOL_VERSION),
    role: z.literal('orchestrator'),
    id: z.string(),
    name: z.string(),
    issuer: url,
    jwks_uri: url,
    mandates_endpoint: url,
    attestations_endpoint: url,
    charges_endpoint: url,
    openapi: url,
    providers: z.array(url),
  })
  .openapi('OrchestratorDiscovery');

/** RFC 8414 authorization server metadata, as a provider publishes it. */
export const AuthorizationServerMetadataSchema = z
  .object({
    issuer: url,
    token_endpoint: url,
    jwks_uri: url,
    revocation_endpoint: url,
    introspection_endpoint: url,
    grant_types_supported: z.array(z.string()),
    token_endpoint_auth_methods_supported: z.array(z.string()),
    dpop_signing_alg_values_supported: z.array(z.string()),
    authorization_details_types_supported: z.array(z.string()),
    scopes_supported: z.array(z.string()),
    response_types_supported: z.array(z.string()),
    service_documentation: url.optional(),
  })
  .openapi('AuthorizationServerMetadata');

/** RFC 9728 protected resource metadata. */
export const ProtectedResourceMetadataSchema = z
  .object({
    resource: url,
    authorization_servers: z.array(url),
    jwks_uri: url,
    scopes_supported: z.array(z.string()),
    bearer_methods_supported: z.array(z.string()),
    dpop_signing_alg_values_supported: z.array(z.string()),
    dpop_bound_access_tokens_required: z.boolean(),
    authorization_details_types_supported: z.array(z.string()),
    resource_name: z.string(),
  })
  .openapi('ProtectedResourceMetadata');

export const JwksSchema = z
  .object({
    keys: z.array(z.object({ kty: z.string(), kid: z.string(), alg: z.string().optional(), use: z.string().optional() }).catchall(z.unknown())),
  })
  .openapi('JWKS');
