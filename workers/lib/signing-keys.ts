// A role's signing keys come from the SIGNING_KEYS secret: a JSON array of
// private Ed25519 JWKs, newest first. The first signs; all are published, so
// a rotated-out key still verifies what it signed while it overlaps.
import { z } from '@hono/zod-openapi';
import { importJWK, type CryptoKey, type JWK } from 'jose';

const PrivateJwkSchema = z.object({
  kty: z.literal('OKP'),
  crv: z.literal('Ed25519'),
  x: z.string().min(1),
  d: z.string().min(1),
  kid: z.string().min(1),
});

const SigningKeysSchema = z.array(PrivateJwkSchema).min(1);

export type SigningKeys = { active: { kid: string; key: CryptoKey }; publicJwks: { keys: JWK[] } };

const cache = new Map<string, Promise<SigningKeys>>();

export function loadSigningKeys(secret: string | undefined): Promise<SigningKeys> {
  if (!secret) throw new Error('SIGNING_KEYS is not set: run `wrangler secret put SIGNING_KEYS` (npm start generates one for local development)');
  let keys = cache.get(secret);
  if (!keys) {
    keys = parseSigningKeys(secret);
    cache.set(secret, keys);
  }
  return keys;
}

async function parseSigningKeys(secret: string): Promise<SigningKeys> {
  const jwks = SigningKeysSchema.parse(JSON.parse(secret));
  const first = jwks[0]!;
  const key = (await importJWK({ ...first, alg: 'EdDSA' }, 'EdDSA')) as CryptoKey;
  return {
    active: { kid: first.kid, key },
    publicJwks: {
      // No `alg` member: verifiers must accept both EdDSA and Ed25519 (RFC 9864) for these keys.
      keys: jwks.map(({ kty, crv, x, kid }) => ({ kty, crv, x, kid, use: 'sig' })),
    },
  };
}
