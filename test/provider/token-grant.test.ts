// The JWT bearer grant with DPoP at the provider (PROTOCOL.md §2.3, RFC 7523,
// RFC 9449): the happy path, and every attack on it refused with an RFC 6749
// error, Cache-Control: no-store, and no account created or linked.
import { env } from 'cloudflare:workers';
import { SignJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { dpopProof, newAgentKey } from '../support/agent-keys';
import {
  b64url,
  call,
  fetched,
  newSigningKey,
  now,
  obtainToken,
  ORCHESTRATOR,
  orchestratorKey,
  publishEs256OrchestratorKey,
  serveJwks,
  signAttestation,
  signCompact,
  TOKEN_ENDPOINT,
  tokenRequest,
  useFakeOrchestrator,
  type IssuedToken,
} from '../support/fake-orchestrator';

useFakeOrchestrator();

const db = () => (env as unknown as TestEnv).DB;

async function accountCount(): Promise<number> {
  return (await db().prepare('SELECT COUNT(*) AS n FROM accounts').first<{ n: number }>())!.n;
}

async function linkOf(sub: string) {
  return db().prepare('SELECT account_id FROM account_links WHERE sub = ?1').bind(sub).first<{ account_id: string }>();
}

/** RFC 6749 §5.2: 400, {error, error_description}, never cached, not problem+json. */
async function expectOAuthError(res: Response, error: string | string[]) {
  expect(res.status).toBe(400);
  expect(res.headers.get('cache-control')).toBe('no-store');
  expect(res.headers.get('content-type')).toMatch(/^application\/json/);
  const body = (await res.json()) as { error: string; error_description: string };
  if (Array.isArray(error)) expect(error).toContain(body.error);
  else expect(body.error).toBe(error);
  expect(typeof body.error_description).toBe('string');
  expect(body.error_description.length).toBeGreaterThan(0);
  return body;
}

/**
 * Runs `attack` and checks that it was refused with `error` and changed
 * nothing: no account created, no link for the attestation's sub.
 */
async function expectRefusedWithoutStateChange(sub: string, error: string | string[], attack: () => Promise<Response>) {
  const before = await accountCount();
  const linkBefore = await linkOf(sub);
  const body = await expectOAuthError(await attack(), error);
  expect(await accountCount()).toBe(before);
  expect(await linkOf(sub)).toEqual(linkBefore);
  return body;
}

describe('JWT bearer grant with DPoP (PROTOCOL §2.3)', () => {
  it('issues a DPoP-bound token and auto-provisions an account for a new (iss, sub)', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    const before = await accountCount();
    const res = await tokenRequest(agent, attestation);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as IssuedToken & Record<string, unknown>;
    expect(body.token_type).toBe('DPoP');
    expect(typeof body.access_token).toBe('string');
    expect(body.expires_in).toBeGreaterThan(0);
    expect(body.expires_in).toBeLessThanOrEqual(900);
    expect(body.scope).toBe('domains:write workers:write');
    expect(body.authorization_details).toEqual(attestation.claims.authorization_details);
    expect(body.account_id).toMatch(/^acct_/);
    expect(body.account_created).toBe(true);
    expect(body).not.toHaveProperty('refresh_token');
    expect(await accountCount()).toBe(before + 1);
    expect((await linkOf(attestation.sub))?.account_id).toBe(body.account_id);
  });

  it('gives a second attestation for the same principal the same account, account_created false', async () => {
    const agent = await newAgentKey();
    const first = await obtainToken({ agent });
    const before = await accountCount();
    const again = await signAttestation({ agent, sub: first.attestation.sub, agentId: first.attestation.agentId, mandateId: first.attestation.mandateId });
    const res = await tokenRequest(agent, again);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as IssuedToken;
    expect(body.account_id).toBe(first.token.account_id);
    expect(body.account_created).toBe(false);
    expect(await accountCount()).toBe(before);
  });

  it('accepts the fully-specified Ed25519 alg name (RFC 9864) on the attestation and the proof', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent, header: { alg: 'Ed25519' } });
    const res = await tokenRequest(agent, attestation, { alg: 'Ed25519' });
    expect(res.status).toBe(200);
  });

  it('accepts an attestation the orchestrator signed with ES256 (§2.2: EdDSA or ES256), and no other algorithm of that key', async () => {
    const es256 = await publishEs256OrchestratorKey();
    const agent = await newAgentKey();
    const res = await tokenRequest(agent, await signAttestation({ agent, header: { alg: 'ES256', kid: es256.kid }, signWith: es256.privateKey }));
    expect(res.status).toBe(200);
    const other = await newAgentKey();
    const es384 = await signAttestation({ agent: other, header: { alg: 'ES384', kid: es256.kid }, signWith: es256.privateKey });
    await expectRefusedWithoutStateChange(es384.sub, 'invalid_grant', () => tokenRequest(other, es384));
  });

  it('accepts an attestation whose iat leads the clock by less than the 60 s skew', async () => {
    const agent = await newAgentKey();
    const iat = now() + 30;
    const res = await tokenRequest(agent, await signAttestation({ agent, claims: { iat, exp: iat + 300 } }));
    expect(res.status).toBe(200);
  });
});

describe('token endpoint refusals: the attestation (PROTOCOL §2.3)', () => {
  it('refuses a forged attestation: signed by another key but naming the trusted kid', async () => {
    const agent = await newAgentKey();
    const attacker = await newSigningKey();
    const attestation = await signAttestation({ agent, signWith: attacker.privateKey });
    expect(attestation.header.kid).toBe(orchestratorKey.kid);
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
  });

  it('refuses an unsecured attestation (alg none, empty signature)', async () => {
    const agent = await newAgentKey();
    const template = await signAttestation({ agent });
    for (const alg of ['none', 'None', 'NONE']) {
      const unsecured = `${b64url(JSON.stringify({ alg, typ: 'oauth-id-jag+jwt', kid: orchestratorKey.kid }))}.${b64url(JSON.stringify(template.claims))}.`;
      await expectRefusedWithoutStateChange(template.sub, 'invalid_grant', () => tokenRequest(agent, unsecured));
    }
  });

  it('refuses an HS256 attestation keyed with the orchestrator’s public key (algorithm confusion)', async () => {
    const agent = await newAgentKey();
    const template = await signAttestation({ agent });
    const publicJwk = orchestratorKey.publicJwk;
    const x = Uint8Array.from(atob(publicJwk.x!.replaceAll('-', '+').replaceAll('_', '/')), (ch) => ch.charCodeAt(0));
    const secrets = [new TextEncoder().encode(JSON.stringify(publicJwk)), new TextEncoder().encode(JSON.stringify({ keys: [publicJwk] })), x, new TextEncoder().encode(publicJwk.x!)];
    for (const secret of secrets) {
      const forged = await new SignJWT(template.claims).setProtectedHeader({ alg: 'HS256', typ: 'oauth-id-jag+jwt', kid: orchestratorKey.kid }).sign(secret);
      await expectRefusedWithoutStateChange(template.sub, 'invalid_grant', () => tokenRequest(agent, forged));
    }
  });

  it('refuses an expired attestation', async () => {
    const agent = await newAgentKey();
    const iat = now() - 400;
    const attestation = await signAttestation({ agent, claims: { iat, exp: iat + 300 } });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
  });

  it('refuses an attestation issued in the future beyond the 60 s skew', async () => {
    const agent = await newAgentKey();
    const iat = now() + 120;
    const attestation = await signAttestation({ agent, claims: { iat, exp: iat + 300 } });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
  });

  it('refuses an attestation addressed to another provider (wrong aud)', async () => {
    const agent = await newAgentKey();
    for (const aud of ['http://127.0.0.1:8789', `${'http://127.0.0.1:8788'}/`, 'http://localhost:8788', ['http://127.0.0.1:8789']]) {
      const attestation = await signAttestation({ agent, claims: { aud } });
      await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
    }
    const noAud = await signAttestation({ agent, claims: { aud: undefined } });
    await expectRefusedWithoutStateChange(noAud.sub, 'invalid_grant', () => tokenRequest(agent, noAud));
  });

  it('refuses an attestation from an untrusted issuer even though its JWKS verifies it: trust, not keys, decides', async () => {
    const agent = await newAgentKey();
    const rogue = 'http://127.0.0.1:9999';
    const rogueKey = await newSigningKey();
    serveJwks(`${rogue}/.well-known/jwks.json`, () => ({ keys: [rogueKey.publicJwk] }));
    // The rogue issuer's JWKS is really served: the signature would verify against it.
    const served = await fetch(`${rogue}/.well-known/jwks.json`);
    expect(((await served.json()) as { keys: unknown[] }).keys).toEqual([rogueKey.publicJwk]);
    fetched.length = 0;
    const attestation = await signAttestation({ agent, claims: { iss: rogue }, header: { kid: rogueKey.kid }, signWith: rogueKey.privateKey });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
    expect(fetched).not.toContain(`${rogue}/.well-known/jwks.json`);
  });

  it('refuses a replayed attestation (same jti twice, each with a fresh DPoP proof)', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    const first = await tokenRequest(agent, attestation);
    expect(first.status).toBe(200);
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
  });

  it('refuses an attestation naming a jti already used by another attestation of the same issuer', async () => {
    const agent = await newAgentKey();
    const first = await obtainToken({ agent });
    const copy = await signAttestation({ agent, sub: first.attestation.sub, agentId: first.attestation.agentId, claims: { jti: first.attestation.jti } });
    await expectRefusedWithoutStateChange(copy.sub, 'invalid_grant', () => tokenRequest(agent, copy));
  });

  it('refuses an authorization_details entry of a type the provider does not know (fail closed)', async () => {
    const agent = await newAgentKey();
    const template = await signAttestation({ agent });
    const mandate = (template.claims.authorization_details as Record<string, unknown>[])[0]!;
    const unknown = { type: 'payment_initiation', instructedAmount: { currency: 'EUR', amount: '123.50' } };
    for (const details of [[unknown], [mandate, unknown], [unknown, mandate], [{ ...mandate, type: 'oap_mandate_v2' }], []]) {
      const attestation = await signAttestation({ agent, claims: { authorization_details: details } });
      await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
    }
  });

  it('refuses an oap_mandate entry carrying a constraint the provider does not know (fail closed, §2.1)', async () => {
    const agent = await newAgentKey();
    const template = await signAttestation({ agent });
    const mandate = (template.claims.authorization_details as Record<string, unknown>[])[0]!;
    const attestation = await signAttestation({ agent, claims: { authorization_details: [{ ...mandate, max_per_day: { amount: 100, currency: 'usd' } }] } });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
  });

  it('refuses an attestation whose header points at a key elsewhere (jku, x5u)', async () => {
    const agent = await newAgentKey();
    for (const header of [{ jku: 'http://127.0.0.1:9999/.well-known/jwks.json' }, { x5u: 'http://127.0.0.1:9999/cert.pem' }]) {
      // Signed by the trusted key: only the header rule can refuse it.
      const attestation = await signAttestation({ agent, header });
      await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
    }
  });

  it('refuses an attestation that embeds its own jwk in the header', async () => {
    const agent = await newAgentKey();
    const attacker = await newSigningKey();
    const { kid: _kid, ...attackerJwk } = attacker.publicJwk;
    // Self-signed with the embedded key, and also signed by the trusted key: both refused.
    const selfSigned = await signAttestation({ agent, header: { jwk: attackerJwk, kid: undefined }, signWith: attacker.privateKey });
    await expectRefusedWithoutStateChange(selfSigned.sub, 'invalid_grant', () => tokenRequest(agent, selfSigned));
    const trustedSigned = await signAttestation({ agent, header: { jwk: { ...orchestratorKey.publicJwk, kid: undefined } } });
    await expectRefusedWithoutStateChange(trustedSigned.sub, 'invalid_grant', () => tokenRequest(agent, trustedSigned));
  });

  it('refuses an attestation that lives longer than 300 s', async () => {
    const agent = await newAgentKey();
    const iat = now();
    const attestation = await signAttestation({ agent, claims: { iat, exp: iat + 301 } });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
    const longLived = await signAttestation({ agent, claims: { iat, exp: iat + 86_400 } });
    await expectRefusedWithoutStateChange(longLived.sub, 'invalid_grant', () => tokenRequest(agent, longLived));
  });

  it('refuses an attestation of the wrong typ (a plain JWT or an access token passed off as an ID-JAG)', async () => {
    const agent = await newAgentKey();
    for (const typ of ['JWT', 'at+jwt', undefined]) {
      const attestation = await signAttestation({ agent, header: { typ } });
      await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
    }
  });

  it('refuses an attestation whose act.sub is not its client_id (an agent acting as another)', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent, claims: { act: { sub: 'agt_someoneelse' } } });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_grant', () => tokenRequest(agent, attestation));
  });

  it('refuses a client_id parameter that differs from the assertion’s', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    // RFC 6749 §5.2: a grant "issued to another client" is invalid_grant; invalid_client is also defensible.
    await expectRefusedWithoutStateChange(attestation.sub, ['invalid_grant', 'invalid_client'], () =>
      tokenRequest(agent, attestation, {}, { form: { client_id: 'agt_impostor' } }),
    );
    // The same attestation with the matching client_id still works: the refusal consumed nothing.
    const ok = await tokenRequest(agent, attestation, {}, { form: { client_id: attestation.agentId } });
    expect(ok.status).toBe(200);
  });
});

describe('token endpoint refusals: the DPoP proof (PROTOCOL §2.3, RFC 9449)', () => {
  it('refuses a DPoP proof signed by another key than the attestation’s cnf.jkt (a stolen attestation)', async () => {
    const agent = await newAgentKey();
    const thief = await newAgentKey();
    const attestation = await signAttestation({ agent });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, {}, { proofKey: thief }));
    // The thief's proof naming the agent's public key in its header does not verify either.
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, { jwk: agent.jwk }, { proofKey: thief }));
  });

  it('refuses a DPoP proof for another method (wrong htm)', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, { htm: 'GET' }));
  });

  it('refuses a DPoP proof for another URL (wrong htu)', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    for (const htu of ['http://127.0.0.1:8788/oauth/introspect', 'http://127.0.0.1:8789/oauth/token', 'https://cloud.oap.example/oauth/token']) {
      await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, { htu }));
    }
  });

  it('refuses a stale DPoP proof (iat more than 60 s old) and one from the future', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, { iat: now() - 120 }));
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, { iat: now() + 120 }));
  });

  it('refuses a reused DPoP proof jti (two different attestations, same proof jti)', async () => {
    const agent = await newAgentKey();
    const jti = crypto.randomUUID();
    const first = await signAttestation({ agent });
    expect((await tokenRequest(agent, first, { jti })).status).toBe(200);
    const second = await signAttestation({ agent, sub: first.sub, agentId: first.agentId, mandateId: first.mandateId });
    await expectRefusedWithoutStateChange(second.sub, 'invalid_dpop_proof', () => tokenRequest(agent, second, { jti }));
  });

  it('refuses a reused DPoP proof jti even when the second attestation names another principal (no account created)', async () => {
    const agent = await newAgentKey();
    const jti = crypto.randomUUID();
    const first = await signAttestation({ agent });
    expect((await tokenRequest(agent, first, { jti })).status).toBe(200);
    // Same agent key, same proof jti, an attestation for a sub the provider has never seen.
    const second = await signAttestation({ agent, agentId: first.agentId });
    await expectRefusedWithoutStateChange(second.sub, 'invalid_dpop_proof', () => tokenRequest(agent, second, { jti }));
  });

  it('refuses a token request without a DPoP proof', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, {}, { noProof: true }));
  });

  it('refuses a DPoP proof of the wrong typ or carrying a private key', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, { typ: 'JWT' }));
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () => tokenRequest(agent, attestation, { jwk: { ...agent.jwk, d: b64url(new Uint8Array(32)) } }));
  });

  it('refuses two DPoP proofs in one request', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    const proofs = `${await dpopProof(agent, 'POST', TOKEN_ENDPOINT)}, ${await dpopProof(agent, 'POST', TOKEN_ENDPOINT)}`;
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_dpop_proof', () =>
      call('/oauth/token', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: proofs },
        body: new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: attestation.jwt }).toString(),
      }),
    );
  });
});

describe('token endpoint refusals: the request (RFC 6749)', () => {
  it('refuses any grant_type other than jwt-bearer with unsupported_grant_type', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    for (const grant_type of ['client_credentials', 'authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:token-exchange']) {
      await expectRefusedWithoutStateChange(attestation.sub, 'unsupported_grant_type', () => tokenRequest(agent, attestation, {}, { form: { grant_type } }));
    }
  });

  it('refuses a request without grant_type or without assertion with invalid_request', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    await expectRefusedWithoutStateChange(attestation.sub, ['invalid_request', 'unsupported_grant_type'], () =>
      tokenRequest(agent, attestation, {}, { form: { grant_type: undefined } }),
    );
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_request', () => tokenRequest(agent, attestation, {}, { form: { assertion: undefined } }));
  });

  it('refuses a body that is not form-encoded (JSON, text, none declared) with an RFC 6749 invalid_request, not problem+json', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    const fields = { grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: attestation.jwt };
    const bodies: [string | undefined, string][] = [
      ['application/json', JSON.stringify(fields)],
      ['text/plain', new URLSearchParams(fields).toString()],
      [undefined, new URLSearchParams(fields).toString()],
    ];
    for (const [contentType, body] of bodies) {
      await expectRefusedWithoutStateChange(attestation.sub, 'invalid_request', async () => {
        const headers: Record<string, string> = { dpop: await dpopProof(agent, 'POST', TOKEN_ENDPOINT) };
        if (contentType) headers['content-type'] = contentType;
        // Bytes carry no default Content-Type, unlike a string body.
        return call('/oauth/token', { method: 'POST', headers, body: new TextEncoder().encode(body) });
      });
    }
    // The attestation was not consumed by the refusals.
    expect((await tokenRequest(agent, attestation)).status).toBe(200);
  });

  it('answers a wrong method, an unknown OAuth path and a body over 1 MiB in RFC 6749 form too, uncacheable', async () => {
    const expectOAuthError = async (res: Response, status: number) => {
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(await res.json()).toMatchObject({ error: 'invalid_request', error_description: expect.any(String) });
      return res;
    };
    const wrongMethod = await expectOAuthError(await call('/oauth/token', { method: 'GET' }), 405);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    await expectOAuthError(await call('/oauth/nothing-here', { method: 'POST' }), 404);
    const huge = new URLSearchParams({ grant_type: 'urn:ietf:params:oauth:grant-type:jwt-bearer', assertion: 'x'.repeat(1024 * 1024 + 1) }).toString();
    await expectOAuthError(await call('/oauth/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: huge }), 413);
  });

  it('refuses a scope wider than the mandate allows with invalid_scope', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    await expectRefusedWithoutStateChange(attestation.sub, 'invalid_scope', () => tokenRequest(agent, attestation, {}, { form: { scope: 'domains:write billing:write' } }));
    const narrowed = await tokenRequest(agent, attestation, {}, { form: { scope: 'domains:write' } });
    expect(narrowed.status).toBe(200);
    expect(((await narrowed.json()) as IssuedToken).scope).toBe('domains:write');
  });
});

// Keep the signer helpers honest: a correctly signed attestation built by hand verifies.
describe('fake orchestrator', () => {
  it('serves its JWKS to the provider and signs attestations the provider accepts', async () => {
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent });
    const handBuilt = await signCompact(attestation.header, { ...attestation.claims, jti: `att_${crypto.randomUUID()}` });
    expect((await tokenRequest(agent, handBuilt)).status).toBe(200);
    expect(fetched).toContain(`${ORCHESTRATOR}/.well-known/jwks.json`);
  });
});
