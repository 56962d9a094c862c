// Generates a role's signing key set: a JSON array of private Ed25519 JWKs
// (the SIGNING_KEYS secret). Used by `npm start` on first start and by tests.
import { createHash, generateKeyPairSync } from 'node:crypto';

/** RFC 7638 thumbprint of an OKP public key: the kid. */
export function okpThumbprint(jwk) {
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x });
  return createHash('sha256').update(canonical).digest('base64url');
}

export function generateSigningKeys() {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' });
  return JSON.stringify([{ kty: jwk.kty, crv: jwk.crv, x: jwk.x, d: jwk.d, kid: okpThumbprint(jwk) }]);
}
