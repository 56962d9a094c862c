// Route middleware for the provider's agent endpoints: a DPoP-bound access
// token (§2.3), and on paid calls the agent's RFC 9421 signature (§3.1).
import { createMiddleware } from 'hono/factory';
import { HTTPException } from 'hono/http-exception';
import type { JWK } from 'jose';
import { SignatureRefused, verifyRequestSignature, type VerifiedSignature } from '../lib/http-signatures';
import { idempotency, type SingleUse } from '../lib/idempotency';
import { ProblemError } from '../lib/problem';
import { ledgerOf, providerConfig, type ProviderBindings } from './env';
import { authenticateTokenUse, dpopNonce, TokenRefused, type AccessTokenClaims } from './oauth/access-tokens';
import { isRecordedAlready } from './refusals';

export const WWW_AUTHENTICATE_DPOP = 'DPoP algs="EdDSA Ed25519"';

export type TokenVariables = { token: AccessTokenClaims & { jwk: JWK; proofJti: string }; signature: VerifiedSignature & { signed: Record<string, string>; nonces: SingleUse[] } };

/**
 * A refused use of an access token: 401 invalid_token. One of our tokens that verified, its use refused (a proof by
 * another key, a revoked token, a used proof), is in its account's trail (§4), whoever holds it (not always its
 * agent): once per token, the first refusal, so that a stolen one cannot fill the trail.
 */
async function tokenUseRefused(env: ProviderBindings, error: TokenRefused, request: { method: string; path: string }): Promise<ProblemError> {
  const claims = error.claims;
  if (claims) {
    await ledgerOf(env, claims.account_id).recordRefusalOnce(claims.account_id, `refused-token:${claims.jti}`, claims.exp * 1000 + 60_000, {
      actor: { type: 'system', id: 'token-check' },
      action: 'token.use',
      reason: 'invalid_token',
      mandate_id: claims.detail.mandate_id,
      related: [claims.agent_id, `${request.method} ${request.path}`.slice(0, 200), error.message.slice(0, 200)],
    });
  }
  return new ProblemError(401, 'invalid_token', error.message, {}, { 'WWW-Authenticate': `${WWW_AUTHENTICATE_DPOP}, error="invalid_token"` });
}

/** The token of an agent's request (DPoP-bound, §2.3), its refusal as `tokenUseRefused` says it. */
export async function tokenOfRequest(env: ProviderBindings, c: { req: { header(name: string): string | undefined; method: string; path: string } }, deferProofJti = false) {
  try {
    return await authenticateTokenUse(env, { authorization: c.req.header('authorization'), dpop: c.req.header('dpop'), method: c.req.method, path: c.req.path }, { deferProofJti });
  } catch (error) {
    if (error instanceof TokenRefused) throw await tokenUseRefused(env, error, { method: c.req.method, path: c.req.path });
    throw error;
  }
}

const tokenMiddleware = (deferProofJti: boolean) =>
  createMiddleware<{ Bindings: ProviderBindings; Variables: TokenVariables }>(async (c, next) => {
    c.set('token', await tokenOfRequest(c.env, c, deferProofJti));
    await next();
  });

export const requireAccessToken = tokenMiddleware(false);

/** For paid calls: the proof's jti is consumed with the signature's nonce (requireAgentSignature). */
export const requirePaidCallToken = tokenMiddleware(true);

/**
 * §4: every refusal of a paid call is an event in the account's trail, the agent its actor: a bad signature, a used
 * nonce, a refused Idempotency-Key, a body the route or the catalog refuses, a scope, a price that changed, a resource
 * not found or not in a state for it. After the token (whose account and agent it is), before everything else.
 */
export const auditRefusals = (action: string) =>
  createMiddleware<{ Bindings: ProviderBindings; Variables: TokenVariables }>(async (c, next) => {
    await next();
    const error = c.error;
    const status = error instanceof ProblemError || error instanceof HTTPException ? error.status : 0;
    if (status < 400 || status >= 500 || isRecordedAlready(error!)) return;
    const token = c.get('token');
    await ledgerOf(c.env, token.account_id).recordRefusal(token.account_id, {
      actor: { type: 'agent', id: token.agent_id },
      action,
      reason: error instanceof ProblemError ? error.code : 'invalid_request',
      mandate_id: token.detail.mandate_id,
      target: c.req.param('id') ?? null,
    });
  });

/**
 * §3.1: paid calls carry the agent's message signature over the exact body,
 * by the key the token is bound to; its nonce and the DPoP proof's jti are
 * single use. They are consumed with the Idempotency-Key's record, in one
 * round trip to the account's ledger: a retry (signed again, new nonce) can
 * replay, a reused nonce cannot. This middleware is the whole guard of a paid
 * call: signature, single use, idempotency.
 */
export const requireAgentSignature = createMiddleware<{ Bindings: ProviderBindings; Variables: TokenVariables }>(async (c, next) => {
  const token = c.get('token');
  const body = await c.req.text();
  const targetUri = `${providerConfig(c.env).PUBLIC_BASE_URL}${c.req.path}`;
  const signed = {
    method: c.req.method,
    target_uri: targetUri,
    body,
    content_digest: c.req.header('content-digest') ?? '',
    signature_input: c.req.header('signature-input') ?? '',
    signature: c.req.header('signature') ?? '',
  };
  let verified: VerifiedSignature;
  try {
    verified = await verifyRequestSignature(
      { method: signed.method, targetUri, body, contentDigest: c.req.header('content-digest'), signatureInput: c.req.header('signature-input'), signature: c.req.header('signature') },
      token.jwk,
      token.jkt,
    );
  } catch (error) {
    throw new ProblemError(401, 'invalid_signature', `The request signature was refused: ${error instanceof SignatureRefused ? error.message : 'invalid'}.`);
  }
  const nonces = [
    { nonce: dpopNonce(token.jkt, token.proofJti), expiresAtMs: Date.now() + 5 * 60 * 1000 },
    { nonce: `sig:${token.jkt}:${verified.params.nonce}`, expiresAtMs: (verified.params.expires + 60) * 1000 },
  ];
  c.set('signature', { ...verified, signed, nonces });
  return idempotent(c, next);
});

const nonceSeen = (index: number) =>
  index === 0
    ? new ProblemError(401, 'invalid_token', 'This DPoP proof was already used.', {}, { 'WWW-Authenticate': `${WWW_AUTHENTICATE_DPOP}, error="invalid_token"` })
    : new ProblemError(401, 'replayed', 'This signature nonce was already used.');

/**
 * §3.1 Conventions: at a provider the idempotency caller is the (account, agent) pair, never the token, which rolls.
 * A signed paid call's single-use values go with the key's record (requireAgentSignature).
 */
export const idempotent = idempotency({
  required: true,
  caller: (c) => {
    const get = c.get as <K extends keyof TokenVariables>(k: K) => TokenVariables[K] | undefined;
    const token = get('token')!;
    const signature = get('signature');
    return {
      store: ledgerOf(c.env as ProviderBindings, token.account_id),
      caller: `${token.account_id}:${token.agent_id}`,
      ...(signature ? { nonces: signature.nonces, nonceSeen } : {}),
    };
  },
});
