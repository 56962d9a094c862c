// The provider's OAuth endpoints (PROTOCOL.md §2.3): token (RFC 7523 + RFC
// 9449), revocation (RFC 7009) and introspection (RFC 7662). They answer RFC
// 6749 errors with Cache-Control: no-store, never problem+json.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import type { RoleEnv } from '../../lib/app';
import { DpopRefused, verifyDpopProof } from '../../lib/dpop';
import { MandateDetailSchema } from '../../lib/schemas/mandates';
import { ledgerOf, providerConfig, type ProviderBindings } from '../env';
import { decodeAccessToken, tokenIsLive, TokenRefused } from '../oauth/access-tokens';
import { OAuthError } from '../../lib/oauth-error';
import { exchangeAttestation, JWT_BEARER } from '../oauth/token-grant';
import { addRevocation } from '../store/accounts';

const OAuthErrorSchema = z.object({ error: z.string(), error_description: z.string(), link_url: z.string().url().optional() }).openapi('OAuthError');
const oauthError = (description: string) => ({ description, content: { 'application/json': { schema: OAuthErrorSchema } } });

const TokenRequestSchema = z
  .object({
    grant_type: z.string().openapi({ example: JWT_BEARER, description: `Only ${JWT_BEARER}` }),
    assertion: z.string().optional().openapi({ description: 'The orchestrator’s attestation (ID-JAG)' }),
    scope: z.string().optional(),
    client_id: z.string().optional(),
  })
  .openapi('TokenRequest');

const TokenResponseSchema = z
  .object({
    access_token: z.string(),
    token_type: z.literal('DPoP'),
    expires_in: z.number().int(),
    scope: z.string(),
    authorization_details: z.array(MandateDetailSchema),
    account_id: z.string(),
    account_created: z.boolean(),
  })
  .openapi('TokenResponse');

const TokenParamSchema = z.object({ token: z.string().optional(), token_type_hint: z.string().optional() }).openapi('TokenParam');

const IntrospectionSchema = z
  .object({
    active: z.boolean(),
    scope: z.string().optional(),
    client_id: z.string().optional(),
    sub: z.string().optional(),
    token_type: z.string().optional(),
    exp: z.number().int().optional(),
    iat: z.number().int().optional(),
    iss: z.string().optional(),
    cnf: z.object({ jkt: z.string() }).optional(),
    authorization_details: z.array(MandateDetailSchema).optional(),
  })
  .openapi('Introspection');

/** Validation failures on OAuth endpoints are RFC 6749 errors too. */
const oauthValidationHook = (result: { success: boolean }): undefined => {
  if (!result.success) throw new OAuthError(400, 'invalid_request', 'The request parameters are malformed.');
  return undefined;
};

async function formOf(c: Context): Promise<Record<string, string>> {
  const type = (c.req.header('content-type') ?? '').toLowerCase();
  if (!type.startsWith('application/x-www-form-urlencoded')) throw new OAuthError(400, 'invalid_request', 'The body must be application/x-www-form-urlencoded.');
  const body = await c.req.parseBody();
  return Object.fromEntries(Object.entries(body).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
}

/**
 * Revocation and introspection are for the token's holder: the request
 * carries a DPoP proof by the key the token is bound to (the agent is a
 * public client; possession of the key is its authentication).
 */
async function holderClaims(c: Context<{ Bindings: ProviderBindings; Variables: any }>, token: string, path: string) {
  const claims = await decodeAccessToken(c.env, token);
  try {
    const proof = await verifyDpopProof(c.req.header('dpop'), { method: 'POST', url: `${providerConfig(c.env).PUBLIC_BASE_URL}${path}` });
    if (proof.jkt !== claims.jkt) throw new DpopRefused('not the key the token is bound to');
  } catch (error) {
    throw new OAuthError(401, 'invalid_client', `Prove the token's key with a DPoP proof: ${(error as Error).message}.`, {}, { 'WWW-Authenticate': 'DPoP algs="EdDSA Ed25519"' });
  }
  return claims;
}

export function oauthRoutes() {
  const app = new OpenAPIHono<RoleEnv<ProviderBindings>>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/oauth/token',
      summary: 'JWT bearer grant (RFC 7523) with DPoP (RFC 9449): attestation in, key-bound access token out',
      request: {
        headers: z.object({ dpop: z.string().optional().openapi({ description: 'DPoP proof by the key in the assertion’s cnf.jkt' }) }),
        body: { required: false, content: { 'application/x-www-form-urlencoded': { schema: TokenRequestSchema } } },
      },
      responses: {
        200: { description: 'Issued', content: { 'application/json': { schema: TokenResponseSchema } } },
        400: oauthError('invalid_request, invalid_grant, invalid_dpop_proof, invalid_scope, unsupported_grant_type, account_link_required (with link_url)'),
      },
    }),
    async (c) => {
      const form = await formOf(c);
      const issued = await exchangeAttestation(c.env, {
        grant_type: form.grant_type,
        assertion: form.assertion,
        scope: form.scope,
        client_id: form.client_id,
        dpop: c.req.header('dpop'),
      });
      return c.json(issued, 200, { 'cache-control': 'no-store', pragma: 'no-cache' });
    },
    oauthValidationHook,
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/oauth/revoke',
      summary: 'Revoke an access token (RFC 7009); the holder proves the token’s key with DPoP',
      request: { body: { required: false, content: { 'application/x-www-form-urlencoded': { schema: TokenParamSchema } } } },
      responses: { 200: { description: 'Revoked (or already unusable)' }, 400: oauthError('invalid_request'), 401: oauthError('invalid_client') },
    }),
    async (c) => {
      const form = await formOf(c);
      if (!form.token) throw new OAuthError(400, 'invalid_request', 'token is required.');
      let claims;
      try {
        claims = await decodeAccessToken(c.env, form.token);
      } catch (error) {
        if (error instanceof TokenRefused) return c.body(null, 200); // RFC 7009 §2.2: an invalid token is not an error
        throw error;
      }
      await holderClaims(c, form.token, '/oauth/revoke');
      await addRevocation(c.env.DB, claims.orchestrator, 'token', claims.jti);
      await ledgerOf(c.env, claims.account_id).appendAuditEvent(claims.account_id, {
        actor: { type: 'agent', id: claims.agent_id },
        action: 'token.revoke',
        target: claims.jti,
        mandate_id: claims.detail.mandate_id,
        outcome: 'succeeded',
      });
      return c.body(null, 200, { 'cache-control': 'no-store' });
    },
    oauthValidationHook,
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/oauth/introspect',
      summary: 'Introspect an access token (RFC 7662); the holder proves the token’s key with DPoP',
      request: { body: { required: false, content: { 'application/x-www-form-urlencoded': { schema: TokenParamSchema } } } },
      responses: {
        200: { description: 'The token’s state', content: { 'application/json': { schema: IntrospectionSchema } } },
        400: oauthError('invalid_request'),
        401: oauthError('invalid_client'),
      },
    }),
    async (c) => {
      const form = await formOf(c);
      if (!form.token) throw new OAuthError(400, 'invalid_request', 'token is required.');
      let claims;
      try {
        claims = await holderClaims(c, form.token, '/oauth/introspect');
      } catch (error) {
        if (error instanceof TokenRefused) return c.json({ active: false }, 200, { 'cache-control': 'no-store' });
        throw error;
      }
      if (!(await tokenIsLive(c.env, claims))) return c.json({ active: false }, 200, { 'cache-control': 'no-store' });
      return c.json(
        {
          active: true,
          scope: claims.scope.join(' '),
          client_id: claims.agent_id,
          sub: claims.account_id,
          token_type: 'DPoP',
          exp: claims.exp,
          iat: claims.iat,
          iss: providerConfig(c.env).PUBLIC_BASE_URL,
          cnf: { jkt: claims.jkt },
          authorization_details: [claims.detail],
        },
        200,
        { 'cache-control': 'no-store' },
      );
    },
    oauthValidationHook,
  );

  return app;
}
