// The one verifier of request tokens (oap-provider+jwt, oap-orchestrator+jwt):
// each refusal names the check that failed, so both callers refuse alike.
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { sha256Base64url } from '../../workers/lib/jws';
import { claimedIssuer, verifyRequestToken } from '../../workers/lib/request-tokens';

const ISSUER = 'https://signer.example';
const AUDIENCE = 'https://verifier.example';
const HTU = `${AUDIENCE}/v1/charges`;
const TYP = 'oap-provider+jwt';

const { privateKey, publicKey } = await generateKeyPair('Ed25519');
const keys = createLocalJWKSet({ keys: [{ ...(await exportJWK(publicKey)), kid: 'k1' }] });
const now = () => Math.floor(Date.now() / 1000);

async function token(claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) {
  const t = now();
  return new SignJWT({ iss: ISSUER, aud: AUDIENCE, iat: t, exp: t + 60, jti: crypto.randomUUID(), htm: 'POST', htu: HTU, body_sha256: await sha256Base64url('{}'), ...claims })
    .setProtectedHeader({ alg: 'EdDSA', typ: TYP, kid: 'k1', ...header })
    .sign(privateKey);
}

const verify = (jwt: string, more: { body?: string; requiredClaims?: string[] } = {}) =>
  verifyRequestToken(jwt, { typ: TYP, issuer: ISSUER, keys, audience: AUDIENCE, method: 'POST', url: HTU, body: '{}', ...more });

describe('verifyRequestToken', () => {
  it('returns the payload of a token bound to this request', async () => {
    await expect(verify(await token(), { requiredClaims: ['jti'] })).resolves.toMatchObject({ iss: ISSUER, htm: 'POST' });
  });

  it('names the check a token fails', async () => {
    const t = now();
    const cases: [Record<string, unknown>, string][] = [
      [{ aud: 'https://elsewhere.example' }, 'does not verify'],
      [{ iat: t - 120, exp: t - 60 }, 'has expired'],
      [{ iat: t + 30, exp: t + 90 }, 'iat is in the future'],
      [{ iat: t, exp: t + 61 + 5 }, 'lives longer than 60 s'],
      [{ iat: t - 10, exp: t + 55 }, 'lives longer than 60 s'],
      [{ htm: 'GET' }, 'htm does not match'],
      [{ htu: `${AUDIENCE}/v1/other` }, 'htu does not match'],
      [{ body_sha256: 'x' }, 'body_sha256 does not match'],
    ];
    for (const [claims, reason] of cases) await expect(verify(await token(claims)), JSON.stringify(claims)).rejects.toThrow(reason);
    await expect(verify(await token({ jti: undefined }), { requiredClaims: ['jti'] })).rejects.toThrow('does not verify');
    await expect(verify(await token({}, { typ: 'JWT' }))).rejects.toThrow('does not verify');
  });

  it('allows 5 s of clock skew either way, and checks no body when none is given', async () => {
    const t = now();
    await expect(verify(await token({ iat: t + 3, exp: t + 63 }))).resolves.toBeTruthy();
    await expect(verify(await token({ iat: t - 60, exp: t - 3 }))).resolves.toBeTruthy();
    await expect(verify(await token({ body_sha256: undefined }), { body: undefined })).resolves.toBeTruthy();
  });
});

describe('claimedIssuer', () => {
  it('reads the issuer only from a token of the expected typ that follows the JOSE header rules', async () => {
    expect(claimedIssuer(await token(), TYP)).toBe(ISSUER);
    const otherTyp = await token({}, { typ: 'oap-orchestrator+jwt' });
    const pointsElsewhere = await token({}, { jku: 'https://evil.example/jwks.json' });
    expect(() => claimedIssuer('not-a-jwt', TYP)).toThrow('not a compact JWS');
    expect(() => claimedIssuer(otherTyp, TYP)).toThrow(`typ must be ${TYP}`);
    expect(() => claimedIssuer(pointsElsewhere, TYP)).toThrow('header jku is refused');
  });
});
