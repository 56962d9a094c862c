// Access tokens this provider issues: JWTs (RFC 9068, typ at+jwt) signed with
// its own key, bound to the agent key (cnf.jkt, RFC 9449), at most 900 s.
// On every use: signature, expiry, the DPoP proof with `ath`, a fresh proof
// jti, and no revocation of the token, its mandate or its agent.
import { createLocalJWKSet, jwtVerify, type JWK, type JWTPayload } from 'jose';
import { DpopRefused, verifyDpopProof } from '../../lib/dpop';
import { ED25519_ALGS, signJwt } from '../../lib/jws';
import { loadSigningKeys } from '../../lib/signing-keys';
import { MandateDetailSchema, type MandateDetail } from '../../lib/schemas/mandates';
import { ledgerOf, providerConfig, type ProviderBindings } from '../env';
import { revokedAny } from '../store/accounts';

export const ACCESS_TOKEN_LIFETIME_S = 900;

export type AccessTokenClaims = {
  jti: string;
  account_id: string;
  agent_id: string;
  orchestrator: string;
  jkt: string;
  scope: string[];
  detail: MandateDetail;
  iat: number;
  exp: number;
};

export async function signAccessToken(env: ProviderBindings, claims: Omit<AccessTokenClaims, 'iat'>): Promise<string> {
  const config = providerConfig(env);
  return signJwt(await loadSigningKeys(config.SIGNING_KEYS), 'at+jwt', {
    iss: config.PUBLIC_BASE_URL,
    aud: `${config.PUBLIC_BASE_URL}/v1`,
    sub: claims.account_id,
    client_id: claims.agent_id,
    act: { sub: claims.agent_id },
    cnf: { jkt: claims.jkt },
    scope: claims.scope.join(' '),
    authorization_details: [claims.detail],
    oap_orchestrator: claims.orchestrator,
    jti: claims.jti,
    iat: Math.floor(Date.now() / 1000),
    exp: claims.exp,
  });
}

/** `claims`: the token's, when it verified and its use was refused (a proof by another key, a revoked token, a used proof). */
export class TokenRefused extends Error {
  constructor(
    message: string,
    readonly claims?: AccessTokenClaims,
  ) {
    super(message);
  }
}

export const dpopNonce = (jkt: string, jti: string) => `dpop:${jkt}:${jti}`;

/** Signature, issuer, audience and expiry of one of our own tokens; nothing about its use. */
export async function decodeAccessToken(env: ProviderBindings, token: string): Promise<AccessTokenClaims> {
  const config = providerConfig(env);
  const keys = await loadSigningKeys(config.SIGNING_KEYS);
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, createLocalJWKSet(keys.publicJwks), {
      typ: 'at+jwt',
      algorithms: ED25519_ALGS,
      issuer: config.PUBLIC_BASE_URL,
      audience: `${config.PUBLIC_BASE_URL}/v1`,
    }));
  } catch {
    throw new TokenRefused('the access token is invalid or expired');
  }
  const detail = MandateDetailSchema.safeParse((payload.authorization_details as unknown[] | undefined)?.[0]);
  const jkt = (payload.cnf as { jkt?: unknown } | undefined)?.jkt;
  if (!detail.success || typeof jkt !== 'string' || typeof payload.jti !== 'string' || typeof payload.sub !== 'string') throw new TokenRefused('the access token is malformed');
  return {
    jti: payload.jti,
    account_id: payload.sub,
    agent_id: String(payload.client_id),
    orchestrator: String(payload.oap_orchestrator),
    jkt,
    scope: String(payload.scope ?? '').split(' ').filter(Boolean),
    detail: detail.data,
    iat: payload.iat ?? 0,
    exp: payload.exp ?? 0,
  };
}

/** Still honoured: not revoked, and the mandate it carries not past its end. */
export async function tokenIsLive(env: ProviderBindings, claims: AccessTokenClaims): Promise<boolean> {
  if (Date.parse(claims.detail.expires_at) <= Date.now()) return false;
  return !(await revokedAny(env.DB, claims.orchestrator, { mandate: claims.detail.mandate_id, agent: claims.agent_id, token: claims.jti }));
}

/**
 * Authenticates a request made with `Authorization: DPoP <token>` and its
 * proof (RFC 9449 §7). A Bearer use of our tokens is refused: they are
 * sender-constrained.
 */
export async function authenticateTokenUse(
  env: ProviderBindings,
  request: { authorization: string | undefined; dpop: string | undefined; method: string; path: string },
  options: { deferProofJti?: boolean } = {},
): Promise<AccessTokenClaims & { jwk: JWK; proofJti: string }> {
  const [scheme, token, ...rest] = (request.authorization ?? '').split(' ');
  if (!scheme || scheme.toLowerCase() !== 'dpop' || !token || rest.length) throw new TokenRefused('send the access token as Authorization: DPoP <token>');
  const claims = await decodeAccessToken(env, token);
  let proof;
  try {
    proof = await verifyDpopProof(request.dpop, { method: request.method, url: `${providerConfig(env).PUBLIC_BASE_URL}${request.path}`, accessToken: token });
  } catch (error) {
    throw new TokenRefused(error instanceof DpopRefused ? `DPoP proof refused: ${error.message}` : 'DPoP proof refused', claims);
  }
  if (proof.jkt !== claims.jkt) throw new TokenRefused('the DPoP proof is signed by another key than the token is bound to', claims);
  if (!(await tokenIsLive(env, claims))) throw new TokenRefused('the access token has been revoked', claims);
  // A paid call consumes this proof's jti together with its signature's nonce, in one call to the ledger.
  if (!options.deferProofJti && !(await ledgerOf(env, claims.account_id).consumeNonce(dpopNonce(proof.jkt, proof.jti), Date.now() + 5 * 60 * 1000))) {
    throw new TokenRefused('this DPoP proof was already used', claims);
  }
  return { ...claims, jwk: proof.jwk, proofJti: proof.jti };
}
