// Using a provider's DPoP-bound access token (PROTOCOL.md §2.3, RFC 9449 §7),
// introspection and revocation (RFC 7662, RFC 7009), and revocation pushed by
// the orchestrator as Security Event Tokens (§2.5, RFC 8417).
import { decodeJwt } from 'jose';
import { describe, expect, it } from 'vitest';
import { ProblemSchema } from '../../workers/lib/problem';
import { dpopProof, newAgentKey, type AgentKey, type ProofOptions } from '../support/agent-keys';
import { accountTrail } from '../support/paid-calls';
import {
  call,
  EVENT,
  newSigningKey,
  obtainToken,
  postSecurityEvent,
  publishEs256OrchestratorKey,
  PROVIDER,
  serveJwks,
  signAttestation,
  signSecurityEvent,
  tokenRequest,
  useFakeOrchestrator,
  type Attestation,
} from '../support/fake-orchestrator';

useFakeOrchestrator();

type Grant = { agent: AgentKey; attestation: Attestation; token: string };

/** A token for a fresh agent, or another token for the same agent, principal and mandate as `sibling`. */
async function newGrant(sibling?: Grant): Promise<Grant> {
  const agent = sibling?.agent ?? (await newAgentKey());
  const same = sibling ? { sub: sibling.attestation.sub, agentId: sibling.attestation.agentId, mandateId: sibling.attestation.mandateId } : {};
  const { attestation, token } = await obtainToken({ agent, ...same });
  return { agent, attestation, token: token.access_token };
}

/** GET /v1/audit as the agent; `proof` bends the DPoP proof, `scheme` the Authorization header. */
async function readAudit(grant: Grant, options: { proof?: ProofOptions & { by?: AgentKey; none?: boolean; raw?: string }; scheme?: string } = {}) {
  const headers: Record<string, string> = { authorization: `${options.scheme ?? 'DPoP'} ${grant.token}` };
  const { by, none, raw, ...proofOptions } = options.proof ?? {};
  if (raw) headers.dpop = raw;
  else if (!none) headers.dpop = await dpopProof(by ?? grant.agent, 'GET', `${PROVIDER}/v1/audit`, { accessToken: grant.token, ...proofOptions });
  return call('/v1/audit', { headers });
}

async function expectInvalidToken(res: Response) {
  expect(res.status).toBe(401);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  expect(res.headers.get('www-authenticate')).toMatch(/^DPoP/);
  const problem = ProblemSchema.parse(await res.json());
  expect(problem.code).toBe('invalid_token');
  return problem;
}

async function expectProblem(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  const problem = ProblemSchema.parse(await res.json());
  expect(problem.code).toBe(code);
  return problem;
}

/** RFC 7662, as the token's holder (DPoP proof by the token's key). */
async function introspect(grant: Grant, by: AgentKey = grant.agent) {
  const res = await call('/oauth/introspect', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(by, 'POST', `${PROVIDER}/oauth/introspect`) },
    body: new URLSearchParams({ token: grant.token }).toString(),
  });
  return res;
}

async function isActive(grant: Grant): Promise<boolean> {
  const res = await introspect(grant);
  expect(res.status).toBe(200);
  expect(res.headers.get('cache-control')).toBe('no-store');
  return ((await res.json()) as { active: boolean }).active;
}

async function revoke(grant: Grant, by: AgentKey = grant.agent) {
  return call('/oauth/revoke', {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(by, 'POST', `${PROVIDER}/oauth/revoke`) },
    body: new URLSearchParams({ token: grant.token, token_type_hint: 'access_token' }).toString(),
  });
}

const mandateRevoked = (grant: Grant) => ({ [EVENT('mandate.revoked')]: { mandate_id: grant.attestation.mandateId, agent_id: grant.attestation.agentId } });

describe('using a DPoP-bound access token (PROTOCOL §2.3)', () => {
  it('reads the agent’s own audit trail with the token and a proof carrying ath, including its token.issue event', async () => {
    const grant = await newGrant();
    const res = await readAudit(grant);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/jsonl/);
    const events = (await res.text())
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { action: string; outcome: string; actor: { type: string; id: string }; mandate_id: string | null });
    const issue = events.find((e) => e.action === 'token.issue' && e.outcome === 'succeeded');
    expect(issue).toBeDefined();
    expect(issue!.actor).toEqual({ type: 'agent', id: grant.attestation.agentId });
    expect(issue!.mandate_id).toBe(grant.attestation.mandateId);
    // An agent sees only its own events.
    expect(events.every((e) => e.actor.id === grant.attestation.agentId)).toBe(true);
  });

  it('refuses the agent the verdict and the signed heads of the account’s whole trail, which would tell it the trail’s size', async () => {
    const grant = await newGrant();
    for (const path of ['/v1/audit/verify', '/v1/audit/heads']) {
      const dpop = await dpopProof(grant.agent, 'GET', `${PROVIDER}${path}`, { accessToken: grant.token });
      const problem = await expectProblem(await call(path, { headers: { authorization: `DPoP ${grant.token}`, dpop } }), 403, 'human_required');
      expect(problem).not.toHaveProperty('events');
      expect(problem).not.toHaveProperty('data');
    }
    // The refusals are the agent's own events: it reads them in its own trail.
    const events = (await (await readAudit(grant)).text()).split('\n').filter(Boolean).map((line) => JSON.parse(line) as { action: string; outcome: string; reason: string | null });
    expect(events.filter((e) => e.outcome === 'refused')).toEqual([
      expect.objectContaining({ action: 'audit.verify', reason: 'human_required' }),
      expect.objectContaining({ action: 'audit.heads', reason: 'human_required' }),
    ]);
  });

  it('refuses a token use without a DPoP proof', async () => {
    const grant = await newGrant();
    await expectInvalidToken(await readAudit(grant, { proof: { none: true } }));
  });

  it('refuses a DPoP-bound token presented as a Bearer token, even with a valid proof', async () => {
    const grant = await newGrant();
    await expectInvalidToken(await readAudit(grant, { scheme: 'Bearer' }));
    await expectInvalidToken(await readAudit(grant, { scheme: 'Bearer', proof: { none: true } }));
  });

  it('refuses a proof made for another token (ath does not match)', async () => {
    const grant = await newGrant();
    const other = await newGrant(grant);
    await expectInvalidToken(await readAudit(grant, { proof: { accessToken: other.token } }));
    // A proof without ath at all is refused too.
    await expectInvalidToken(await readAudit(grant, { proof: { raw: await dpopProof(grant.agent, 'GET', `${PROVIDER}/v1/audit`) } }));
  });

  it('refuses a proof signed by another key than the token is bound to (a stolen token), and says so in the account’s trail', async () => {
    const grant = await newGrant();
    const thief = await newAgentKey();
    await expectInvalidToken(await readAudit(grant, { proof: { by: thief } }));
    // Whoever holds the token is not known to be its agent: the refusal is the token check's, naming the agent.
    const account = String(decodeJwt(grant.token).sub);
    const refusals = async () => (await accountTrail(account)).filter((e) => e.action === 'token.use');
    expect(await refusals()).toMatchObject([
      {
        outcome: 'refused',
        reason: 'invalid_token',
        actor: { type: 'system', id: 'token-check' },
        mandate_id: grant.attestation.mandateId,
        related: [grant.attestation.agentId, 'GET /v1/audit', 'the DPoP proof is signed by another key than the token is bound to'],
      },
    ]);
    // Once per token: whoever holds it cannot fill the trail by trying again.
    for (let i = 0; i < 3; i++) await expectInvalidToken(await readAudit(grant, { proof: { by: thief } }));
    expect(await refusals()).toHaveLength(1);
    // A token that does not verify names no account: nothing is written anywhere on its word.
    const [header, payload] = grant.token.split('.');
    await expectInvalidToken(await readAudit({ ...grant, token: `${header}.${payload}.${'A'.repeat(86)}` }));
    expect(await refusals()).toHaveLength(1);
  });

  it('refuses a replayed proof (the same DPoP proof twice)', async () => {
    const grant = await newGrant();
    const proof = await dpopProof(grant.agent, 'GET', `${PROVIDER}/v1/audit`, { accessToken: grant.token });
    expect((await readAudit(grant, { proof: { raw: proof } })).status).toBe(200);
    await expectInvalidToken(await readAudit(grant, { proof: { raw: proof } }));
  });

  it('refuses a proof for another method or URL, and a stale proof', async () => {
    const grant = await newGrant();
    await expectInvalidToken(await readAudit(grant, { proof: { htm: 'POST' } }));
    await expectInvalidToken(await readAudit(grant, { proof: { htu: `${PROVIDER}/v1/audit/verify` } }));
    await expectInvalidToken(await readAudit(grant, { proof: { iat: Math.floor(Date.now() / 1000) - 120 } }));
  });

  it('refuses a tampered token (its scope widened)', async () => {
    const grant = await newGrant();
    const [header, payload, signature] = grant.token.split('.') as [string, string, string];
    const claims = JSON.parse(atob(payload.replaceAll('-', '+').replaceAll('_', '/'))) as Record<string, unknown>;
    const widened = btoa(JSON.stringify({ ...claims, scope: 'domains:write workers:write billing:write' })).replaceAll('+', '-').replaceAll('/', '_').replace(/=+$/, '');
    await expectInvalidToken(await readAudit({ ...grant, token: `${header}.${widened}.${signature}` }));
  });
});

describe('introspection and revocation by the holder (RFC 7662, RFC 7009)', () => {
  it('introspects a live token as active with its cnf.jkt and scope', async () => {
    const grant = await newGrant();
    const res = await introspect(grant);
    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({
      active: true,
      cnf: { jkt: grant.agent.jkt },
      scope: 'domains:write workers:write',
      client_id: grant.attestation.agentId,
      token_type: 'DPoP',
    });
    expect(body.authorization_details).toEqual(grant.attestation.claims.authorization_details);
  });

  it('does not introspect a token for someone who cannot prove its key', async () => {
    const grant = await newGrant();
    const res = await introspect(grant, await newAgentKey());
    expect(res.status).toBe(401);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(((await res.json()) as { error: string }).error).toBe('invalid_client');
  });

  it('revokes a token at its holder’s request: introspection says inactive and the token no longer works', async () => {
    const grant = await newGrant();
    const res = await revoke(grant);
    expect(res.status).toBe(200);
    expect(await isActive(grant)).toBe(false);
    await expectInvalidToken(await readAudit(grant));
  });

  it('does not let someone without the token’s key revoke it', async () => {
    const grant = await newGrant();
    const res = await revoke(grant, await newAgentKey());
    expect(res.status).toBe(401);
    expect(((await res.json()) as { error: string }).error).toBe('invalid_client');
    expect(await isActive(grant)).toBe(true);
  });

  it('revoking only one token leaves the agent’s other tokens live', async () => {
    const grant = await newGrant();
    const other = await newGrant(grant);
    expect((await revoke(grant)).status).toBe(200);
    expect(await isActive(other)).toBe(true);
  });
});

describe('security events from the orchestrator (PROTOCOL §2.5)', () => {
  it('stops honouring a token at once when its mandate is revoked, and acknowledges a redelivery as a duplicate', async () => {
    const grant = await newGrant();
    expect(await isActive(grant)).toBe(true);
    const set = await signSecurityEvent(mandateRevoked(grant), { claims: { sub: grant.attestation.sub } });
    const res = await postSecurityEvent(set.jwt);
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ duplicate: false, applied: ['mandate.revoked'] });
    expect(await isActive(grant)).toBe(false);
    await expectInvalidToken(await readAudit(grant));
    const again = await postSecurityEvent(set.jwt);
    expect(again.status).toBe(202);
    expect(await again.json()).toMatchObject({ duplicate: true });
    // A fresh attestation under the revoked mandate buys no new token.
    const retry = await tokenRequest(grant.agent, await signAttestation({ agent: grant.agent, sub: grant.attestation.sub, agentId: grant.attestation.agentId, mandateId: grant.attestation.mandateId }));
    expect(retry.status).toBe(400);
    expect(((await retry.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it('takes an event the orchestrator signed with ES256, a key of its JWKS', async () => {
    // Published before the provider first reads the JWKS (an unknown kid is refetched at most once per 30 s).
    const es256 = await publishEs256OrchestratorKey();
    const grant = await newGrant();
    const set = await signSecurityEvent(mandateRevoked(grant), { claims: { sub: grant.attestation.sub }, header: { alg: 'ES256', kid: es256.kid }, signWith: es256.privateKey });
    expect((await postSecurityEvent(set.jwt)).status).toBe(202);
    expect(await isActive(grant)).toBe(false);
  });

  it('stops honouring every token of an agent when the agent is revoked, under every mandate', async () => {
    const grant = await newGrant();
    // The same agent under another mandate of the same principal.
    const issued = await obtainToken({ agent: grant.agent, sub: grant.attestation.sub, agentId: grant.attestation.agentId });
    const other: Grant = { agent: grant.agent, attestation: issued.attestation, token: issued.token.access_token };
    expect(other.attestation.mandateId).not.toBe(grant.attestation.mandateId);
    const set = await signSecurityEvent({ [EVENT('agent.revoked')]: { agent_id: grant.attestation.agentId } }, { claims: { sub: grant.attestation.sub } });
    const res = await postSecurityEvent(set.jwt);
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ duplicate: false, applied: ['agent.revoked'] });
    expect(await isActive(grant)).toBe(false);
    expect(await isActive(other)).toBe(false);
    await expectInvalidToken(await readAudit(grant));
    const retry = await tokenRequest(grant.agent, await signAttestation({ agent: grant.agent, agentId: grant.attestation.agentId }));
    expect(retry.status).toBe(400);
    expect(((await retry.json()) as { error: string }).error).toBe('invalid_grant');
  });

  it('takes an event named as PROTOCOL names it (bare, without the URI prefix) and applies it', async () => {
    const grant = await newGrant();
    const set = await signSecurityEvent({ 'mandate.revoked': { mandate_id: grant.attestation.mandateId } }, { claims: { sub: grant.attestation.sub } });
    const res = await postSecurityEvent(set.jwt);
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ duplicate: false, applied: ['mandate.revoked'] });
    expect(await isActive(grant)).toBe(false);
  });

  it('refuses, without acknowledging it, an event whose data does not name its subject: never 202 for an event not applied', async () => {
    const grant = await newGrant();
    let refusedJti = '';
    for (const data of [null, {}, { mandate_id: 42 }, { mandate_id: '' }]) {
      const set = await signSecurityEvent({ [EVENT('mandate.revoked')]: data as never }, { claims: { sub: grant.attestation.sub } });
      await expectProblem(await postSecurityEvent(set.jwt), 400, 'invalid_request');
      refusedJti = set.jti;
    }
    const notAnObject = await signSecurityEvent([] as never, { claims: { sub: grant.attestation.sub } });
    await expectProblem(await postSecurityEvent(notAnObject.jwt), 400, 'invalid_request');
    expect(await isActive(grant)).toBe(true);
    // A refused token was not taken as received: the same jti with a proper event is applied.
    const fixed = await signSecurityEvent(mandateRevoked(grant), { claims: { sub: grant.attestation.sub, jti: refusedJti } });
    expect(await (await postSecurityEvent(fixed.jwt)).json()).toMatchObject({ duplicate: false });
    expect(await isActive(grant)).toBe(false);
  });

  it('refuses a SET signed by another key than the orchestrator’s (forged revocation) with 401 invalid_signature', async () => {
    const grant = await newGrant();
    const attacker = await newSigningKey();
    const set = await signSecurityEvent(mandateRevoked(grant), { signWith: attacker.privateKey });
    await expectProblem(await postSecurityEvent(set.jwt), 401, 'invalid_signature');
    expect(await isActive(grant)).toBe(true);
  });

  it('refuses a SET from an untrusted issuer with 403, even one its own JWKS verifies', async () => {
    const grant = await newGrant();
    const rogue = 'http://127.0.0.1:9999';
    const rogueKey = await newSigningKey();
    serveJwks(`${rogue}/.well-known/jwks.json`, () => ({ keys: [rogueKey.publicJwk] }));
    const set = await signSecurityEvent(mandateRevoked(grant), { claims: { iss: rogue }, header: { kid: rogueKey.kid }, signWith: rogueKey.privateKey });
    const res = await postSecurityEvent(set.jwt);
    expect(res.status).toBe(403);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    expect(await isActive(grant)).toBe(true);
  });

  it('refuses a SET addressed to another provider (wrong aud)', async () => {
    const grant = await newGrant();
    for (const aud of ['http://127.0.0.1:8789', undefined]) {
      const set = await signSecurityEvent(mandateRevoked(grant), { claims: { aud } });
      const res = await postSecurityEvent(set.jwt);
      expect([400, 401, 403]).toContain(res.status);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
    }
    expect(await isActive(grant)).toBe(true);
  });

  it('refuses a SET sent as another content type than application/secevent+jwt with 415', async () => {
    const grant = await newGrant();
    const set = await signSecurityEvent(mandateRevoked(grant));
    for (const type of ['application/json', 'application/jwt', 'text/plain']) {
      await expectProblem(await postSecurityEvent(set.jwt, type), 415, 'unsupported_media_type');
    }
    expect(await isActive(grant)).toBe(true);
    // The refused deliveries did not consume the event: the right content type still applies it.
    expect((await postSecurityEvent(set.jwt)).status).toBe(202);
    expect(await isActive(grant)).toBe(false);
  });

  it('refuses an unsecured SET (alg none) and one with the wrong typ', async () => {
    const grant = await newGrant();
    const set = await signSecurityEvent(mandateRevoked(grant), { header: { typ: 'JWT' } });
    expect((await postSecurityEvent(set.jwt)).status).toBe(400);
    const [, payload] = (await signSecurityEvent(mandateRevoked(grant))).jwt.split('.');
    const unsecured = `${btoa(JSON.stringify({ alg: 'none', typ: 'secevent+jwt' })).replace(/=+$/, '')}.${payload}.`;
    expect((await postSecurityEvent(unsecured)).status).toBe(400);
    expect(await isActive(grant)).toBe(true);
  });
});
