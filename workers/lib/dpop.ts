// RFC 9449 DPoP proof verification, shared by the orchestrator (agent
// requests, §2.4) and providers (token endpoint and resource requests, §2.3).
// Replay of `jti` is checked by the caller, in the ledger object that owns it.
import { EmbeddedJWK, jwtVerify, type JWK } from 'jose';
import { checkJwsHeader, ED25519_ALGS, isEd25519PublicJwk, jwkThumbprint, JwsRefused, sha256Base64url } from './jws';

/** §2.4: `iat` within 60 s of now, either way. */
export const DPOP_IAT_WINDOW_S = 60;

export type VerifiedDpopProof = { jwk: JWK; jkt: string; jti: string; iat: number };

export class DpopRefused extends Error {}

/**
 * Checks a proof against the request it came with (RFC 9449 §4.3): one
 * compact JWS, `typ` dpop+jwt, an Ed25519 public `jwk` that verifies it,
 * `htm` and `htu` of this request (htu without query or fragment), a recent
 * `iat`, a `jti`, and `ath` when it accompanies an access token.
 */
export async function verifyDpopProof(
  proof: string | undefined,
  request: { method: string; url: string; accessToken?: string },
  now = Math.floor(Date.now() / 1000),
): Promise<VerifiedDpopProof> {
  if (!proof) throw new DpopRefused('a DPoP proof is required');
  if (proof.includes(',')) throw new DpopRefused('exactly one DPoP proof is allowed');
  let header;
  try {
    header = checkJwsHeader(proof, { allowEmbeddedJwk: true });
  } catch (error) {
    throw new DpopRefused(error instanceof JwsRefused ? error.message : 'malformed proof');
  }
  if (header.typ !== 'dpop+jwt') throw new DpopRefused('typ must be dpop+jwt');
  if (!isEd25519PublicJwk(header.jwk)) throw new DpopRefused('the proof must carry an Ed25519 public jwk');
  let payload;
  try {
    ({ payload } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ED25519_ALGS }));
  } catch {
    throw new DpopRefused('the proof signature does not verify');
  }
  if (payload.htm !== request.method.toUpperCase()) throw new DpopRefused('htm does not match the request method');
  if (typeof payload.htu !== 'string' || stripQuery(payload.htu) !== stripQuery(request.url)) throw new DpopRefused('htu does not match the request URL');
  if (typeof payload.iat !== 'number' || Math.abs(now - payload.iat) > DPOP_IAT_WINDOW_S) throw new DpopRefused('iat is outside the accepted window');
  if (typeof payload.jti !== 'string' || payload.jti.length < 8 || payload.jti.length > 256) throw new DpopRefused('jti is missing');
  if (request.accessToken !== undefined) {
    if (payload.ath !== (await sha256Base64url(request.accessToken))) throw new DpopRefused('ath does not match the access token');
  }
  const jwk = { kty: 'OKP', crv: 'Ed25519', x: header.jwk.x };
  return { jwk, jkt: await jwkThumbprint(jwk), jti: payload.jti, iat: payload.iat };
}

/** RFC 9449 §4.3 point 9: compare without query and fragment. */
function stripQuery(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return url;
  }
}
