// An agent's Ed25519 key and the DPoP proofs it signs (RFC 9449), for tests.
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose';

export type AgentKey = { privateKey: CryptoKey; publicKey: CryptoKey; jwk: { kty: 'OKP'; crv: 'Ed25519'; x: string }; jkt: string };

export async function newAgentKey(): Promise<AgentKey> {
  const { privateKey, publicKey } = await generateKeyPair('Ed25519', { extractable: true });
  const exported = (await exportJWK(publicKey)) as JWK;
  const jwk = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: exported.x! };
  return { privateKey: privateKey as CryptoKey, publicKey: publicKey as CryptoKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

async function sha256b64url(text: string) {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text)));
  return btoa(String.fromCharCode(...digest)).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
}

export type ProofOptions = { accessToken?: string; iat?: number; jti?: string; htm?: string; htu?: string; alg?: 'EdDSA' | 'Ed25519'; typ?: string; jwk?: object };

/** A DPoP proof for `method url`, signed by `key`; options bend one field at a time for refusal tests. */
export async function dpopProof(key: AgentKey, method: string, url: string, options: ProofOptions = {}): Promise<string> {
  const u = new URL(url);
  return new SignJWT({
    htm: options.htm ?? method,
    htu: options.htu ?? `${u.origin}${u.pathname}`,
    jti: options.jti ?? crypto.randomUUID(),
    ...(options.accessToken ? { ath: await sha256b64url(options.accessToken) } : {}),
  })
    .setProtectedHeader({ alg: options.alg ?? 'EdDSA', typ: options.typ ?? 'dpop+jwt', jwk: options.jwk ?? key.jwk })
    .setIssuedAt(options.iat ?? Math.floor(Date.now() / 1000))
    .sign(key.privateKey);
}
