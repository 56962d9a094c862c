// JOSE rules every role applies (PROTOCOL.md Conventions): Ed25519 under both
// alg names (and ES256 from an orchestrator), compact form only, and no header
// that points at a key elsewhere.
import { calculateJwkThumbprint, decodeProtectedHeader, SignJWT, type JWK, type JWTPayload } from 'jose';
import type { SigningKeys } from './signing-keys';

/** RFC 9864 names Ed25519 fully; widely used clients still send EdDSA: both are accepted. */
export const ED25519_ALGS = ['EdDSA', 'Ed25519'];

/** What an orchestrator may sign its attestations and security events with (PROTOCOL.md §2.2: EdDSA or ES256). */
export const ORCHESTRATOR_ALGS = [...ED25519_ALGS, 'ES256'];

export class JwsRefused extends Error {}

/**
 * Refuses `jku`, `x5u` and `x5c` always, and an embedded `jwk` unless the
 * token is a DPoP proof, where carrying the key is the point (RFC 9449 §4.2).
 */
export function checkJwsHeader(token: string, options: { allowEmbeddedJwk?: boolean; algorithms?: string[] } = {}) {
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(token);
  } catch {
    throw new JwsRefused('not a compact JWS');
  }
  if (token.split('.').length !== 3) throw new JwsRefused('not a compact JWS');
  for (const name of ['jku', 'x5u', 'x5c'] as const) if (name in header) throw new JwsRefused(`header ${name} is refused`);
  if ('jwk' in header && !options.allowEmbeddedJwk) throw new JwsRefused('an embedded jwk is refused');
  if (typeof header.alg !== 'string' || !(options.algorithms ?? ED25519_ALGS).includes(header.alg)) throw new JwsRefused(`alg ${String(header.alg)} is not accepted`);
  return header;
}

/** An Ed25519 public JWK (OKP), with nothing private in it. */
export function isEd25519PublicJwk(jwk: unknown): jwk is JWK & { kty: 'OKP'; crv: 'Ed25519'; x: string } {
  if (typeof jwk !== 'object' || jwk === null) return false;
  const k = jwk as Record<string, unknown>;
  return k.kty === 'OKP' && k.crv === 'Ed25519' && typeof k.x === 'string' && /^[A-Za-z0-9_-]{43}$/.test(k.x) && !('d' in k);
}

/** RFC 7638 thumbprint, base64url SHA-256: how agents are identified. */
export function jwkThumbprint(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(jwk, 'sha256');
}

export function publicJwkOf(jwk: JWK): JWK {
  return { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
}

/** Signs a JWT with the role's active key. */
export function signJwt(keys: SigningKeys, typ: string, payload: JWTPayload): Promise<string> {
  return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', typ, kid: keys.active.kid }).sign(keys.active.key);
}

export function base64url(bytes: Uint8Array): string {
  let binary = '';
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

export async function sha256Base64url(text: string): Promise<string> {
  return base64url(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))));
}

export function randomToken(bytes = 32): string {
  return base64url(crypto.getRandomValues(new Uint8Array(bytes)));
}
