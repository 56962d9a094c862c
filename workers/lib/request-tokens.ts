// Short-lived, request-bound JWTs one role signs to call another (PROTOCOL.md
// §3.1 step 3: oap-provider+jwt; the orchestrator's oap-orchestrator+jwt for
// a charge's audit follows the same rules): one verifier, so both sides refuse alike.
import { decodeJwt, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { checkJwsHeader, ED25519_ALGS, sha256Base64url } from './jws';

/** Its message says which check failed, for callers that tell their (trusted) peer. */
export class RequestTokenRefused extends Error {}

/**
 * The issuer a token claims, read before it is verified, to choose the keys to verify it with:
 * the JOSE header rules and the `typ` first, so nothing else is decoded from a token of another kind.
 */
export function claimedIssuer(token: string, typ: string, algorithms = ED25519_ALGS): string | undefined {
  if (checkJwsHeader(token, { algorithms }).typ !== typ) throw new RequestTokenRefused(`typ must be ${typ}`);
  return decodeJwt(token).iss;
}

export type RequestTokenExpectations = {
  typ: string;
  issuer: string;
  keys: JWTVerifyGetKey;
  /** Our own issuer (public base URL). */
  audience: string;
  method: string;
  /** Our public base URL and the path, without the query (as DPoP's htu, RFC 9449 §4.2). */
  url: string;
  /** When the token binds a body: its `body_sha256` must be this body's hash. */
  body?: string;
  /** Claims required besides `exp` and `iat`, which the lifetime rule needs. */
  requiredClaims?: string[];
  maxLifetimeS?: number;
  /** How far the signer's clock may run ahead of ours (or behind, for `exp`). */
  clockSkewS?: number;
  /** What the signer may sign with: Ed25519 unless said (an orchestrator may use ES256, §2.2). */
  algorithms?: string[];
};

export async function verifyRequestToken(token: string, expected: RequestTokenExpectations): Promise<JWTPayload> {
  const { maxLifetimeS = 60, clockSkewS = 5 } = expected;
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, expected.keys, {
      typ: expected.typ,
      algorithms: expected.algorithms ?? ED25519_ALGS,
      issuer: expected.issuer,
      audience: expected.audience,
      requiredClaims: ['exp', 'iat', ...(expected.requiredClaims ?? [])],
      clockTolerance: clockSkewS,
    }));
  } catch {
    throw new RequestTokenRefused('the token does not verify or has expired');
  }
  // Dated no later than now (within the skew) and living no longer than the maximum: so good for at most that long
  // from now, where an iat the signer dates ahead would otherwise stretch it.
  if (payload.iat! > Math.floor(Date.now() / 1000) + clockSkewS) throw new RequestTokenRefused('iat is in the future');
  if (payload.exp! - payload.iat! > maxLifetimeS) throw new RequestTokenRefused(`the token lives longer than ${maxLifetimeS} s`);
  if (payload.htm !== expected.method) throw new RequestTokenRefused('htm does not match');
  if (payload.htu !== expected.url) throw new RequestTokenRefused('htu does not match');
  if (expected.body !== undefined && payload.body_sha256 !== (await sha256Base64url(expected.body))) throw new RequestTokenRefused('body_sha256 does not match the body');
  return payload;
}
