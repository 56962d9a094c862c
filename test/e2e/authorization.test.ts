// PROTOCOL.md §2 end to end: an agent and its human drive the three running
// roles over real HTTP, from a fresh key to DPoP-bound tokens at two
// providers, revocation reaching the provider, account linking, and the
// refusals that must leave no trace in the state. The provider side is
// driven with oauth4webapi, an OAuth client this project did not write.
import { createRemoteJWKSet, decodeJwt, decodeProtectedHeader, jwtVerify } from 'jose';
import * as oauth from 'oauth4webapi';
import { describe, expect, inject, it } from 'vitest';
import { demoCredentials } from '../../scripts/dev-cluster.mjs';
import { dpopProof, newAgentKey, type AgentKey } from '../support/agent-keys';
import {
  asAgent,
  asHuman,
  auditLines,
  existingCredentials,
  expectProblem,
  inDays,
  readJson,
  registerAgent,
  signIn,
  signUpVerified,
  sleep,
  type HumanSession,
  type Json,
} from './support';

const urls = inject('urls');
const ORCH = urls.orchestrator;
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const insecure = { [oauth.allowInsecureRequests]: true } as const;

const SPEND = { amount: 5000, currency: 'usd', period: 'month' } as const;

async function demoSession(): Promise<HumanSession> {
  const { email, password } = demoCredentials();
  return signIn(ORCH, email, password);
}

/** A registered agent asks its principal for a mandate (§2.1). */
async function requestMandate(key: AgentKey, body: Json): Promise<Json> {
  const res = await asAgent(key, ORCH, 'POST', '/v1/mandates', { description: 'e2e mandate', spend_limit: SPEND, expires_at: inDays(30), ...body });
  const mandate = await readJson(res);
  expect(res.status, JSON.stringify(mandate)).toBe(201);
  expect(mandate).toMatchObject({ status: 'pending' });
  return mandate;
}

/** The human reads the display document and approves with its hash (§2.1). */
async function approve(session: HumanSession, mandateId: string, userCode?: string): Promise<Json> {
  const query = userCode ? `?user_code=${encodeURIComponent(userCode)}` : '';
  const shown = await asHuman(session, 'GET', `/v1/mandates/${mandateId}/display${query}`);
  const display = await readJson(shown);
  expect(shown.status, JSON.stringify(display)).toBe(200);
  expect(display.display_hash).toMatch(/^[0-9a-f]{64}$/);
  const res = await asHuman(session, 'POST', `/v1/mandates/${mandateId}/approve`, { json: { ...(userCode ? { user_code: userCode } : {}), display_hash: display.display_hash } });
  const approved = await readJson(res);
  expect(res.status, JSON.stringify(approved)).toBe(200);
  expect(approved).toMatchObject({ mandate_id: mandateId, status: 'active', display_hash: display.display_hash });
  return approved;
}

async function attest(key: AgentKey, mandateId: string, provider: string): Promise<string> {
  const res = await asAgent(key, ORCH, 'POST', '/v1/attestations', { mandate_id: mandateId, provider });
  const body = await readJson(res);
  expect(res.status, JSON.stringify(body)).toBe(200);
  return body.attestation;
}

/** The provider as oauth4webapi sees it: its RFC 8414 metadata. */
async function discover(base: string): Promise<oauth.AuthorizationServer> {
  const issuer = new URL(base);
  return oauth.processDiscoveryResponse(issuer, await oauth.discoveryRequest(issuer, { algorithm: 'oauth2', ...insecure }));
}

/** RFC 7523 grant with a DPoP proof by the agent key, through oauth4webapi. */
async function tokenRequest(as: oauth.AuthorizationServer, agentId: string, key: AgentKey, assertion: string) {
  const client: oauth.Client = { client_id: agentId };
  const DPoP = oauth.DPoP(client, { privateKey: key.privateKey, publicKey: key.publicKey });
  const response = await oauth.genericTokenEndpointRequest(as, client, oauth.None(), JWT_BEARER, { assertion }, { DPoP, ...insecure });
  return { DPoP, client, response };
}

async function grantToken(as: oauth.AuthorizationServer, agentId: string, key: AgentKey, assertion: string) {
  const { DPoP, client, response } = await tokenRequest(as, agentId, key, assertion);
  expect(response.headers.get('cache-control')).toBe('no-store');
  const token = await oauth.processGenericTokenEndpointResponse(as, client, response);
  return { token, DPoP };
}

/** RFC 7662 introspection by the token's holder (a DPoP proof of the agent key). */
async function introspect(base: string, key: AgentKey, accessToken: string): Promise<Json> {
  const url = `${base}/oauth/introspect`;
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: await dpopProof(key, 'POST', url) },
    body: new URLSearchParams({ token: accessToken }),
  });
  const body = await readJson(res);
  expect(res.status, JSON.stringify(body)).toBe(200);
  expect(res.headers.get('cache-control')).toBe('no-store');
  return body;
}

/** Introspects until the token is no longer active; bounded to ~15 s. */
async function waitInactive(base: string, key: AgentKey, accessToken: string): Promise<Json> {
  const deadline = Date.now() + 15_000;
  let last: Json = {};
  for (let attempt = 0; attempt < 60 && Date.now() < deadline; attempt++) {
    last = await introspect(base, key, accessToken);
    if (last.active === false) return last;
    await sleep(250);
  }
  return last;
}

/** GET /v1/audit with the token and a proof (plain fetch, so that a 401 can be read as it is). */
async function auditWithToken(base: string, key: AgentKey, accessToken: string): Promise<Response> {
  const url = `${base}/v1/audit`;
  return fetch(url, { headers: { authorization: `DPoP ${accessToken}`, dpop: await dpopProof(key, 'GET', url, { accessToken }) } });
}

describe('§2 authorization, end to end over HTTP', () => {
  it('takes a fresh agent key through first contact, approval and attestation to DPoP-bound tokens at two providers', { timeout: 120_000 }, async () => {
    const key = await newAgentKey();

    // First contact (§2.1): an unregistered key asks, naming itself.
    const requested = await asAgent(key, ORCH, 'POST', '/v1/mandates', {
      description: 'Deploy my site with a database',
      scope: [
        { provider: 'cloud', services: ['domain', 'worker-script'] },
        { provider: 'data', services: ['database'] },
      ],
      spend_limit: SPEND,
      expires_at: inDays(30),
      agent: { name: 'e2e first-contact agent', public_jwk: key.jwk },
    });
    const pending = await readJson(requested);
    expect(requested.status, JSON.stringify(pending)).toBe(201);
    expect(pending).toMatchObject({ status: 'pending', approval_url: expect.any(String), user_code: expect.any(String), expires_in: expect.any(Number), interval: expect.any(Number) });
    const mandateId: string = pending.mandate_id;
    const userCode: string = pending.user_code;
    expect(mandateId).toMatch(/^mdt_/);
    expect(pending.expires_in).toBeGreaterThan(0);
    expect(pending.expires_in).toBeLessThanOrEqual(600);
    expect(pending.interval).toBeGreaterThan(0);
    expect(pending.approval_url.startsWith(`${ORCH}/`)).toBe(true);
    expect(pending.approval_url).not.toContain(userCode);
    expect(pending.approval_url).not.toContain(userCode.replace(/[^A-Z]/g, ''));

    // The agent polls: the first poll answers, a poll faster than `interval` is slowed down.
    const firstPoll = await asAgent(key, ORCH, 'GET', `/v1/mandates/${mandateId}`);
    expect(firstPoll.status).toBe(200);
    expect(await readJson(firstPoll)).toMatchObject({ mandate_id: mandateId, status: 'pending' });
    await expectProblem(await asAgent(key, ORCH, 'GET', `/v1/mandates/${mandateId}`), 429, 'slow_down');
    const lastPollAt = Date.now();

    // The human signs in; approving without the code the agent shows is refused.
    const human = await demoSession();
    await expectProblem(await asHuman(human, 'POST', `/v1/mandates/${mandateId}/approve`, { json: {} }), 403, 'invalid_user_code');
    await expectProblem(await asHuman(human, 'POST', `/v1/mandates/${mandateId}/approve`, { json: { user_code: 'BCDF-GHJK' } }), 403, 'invalid_user_code');

    // The approval page asks for the code first.
    const page = await fetch(pending.approval_url, { headers: { cookie: human.cookie, accept: 'text/html' }, redirect: 'manual' });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).toContain('name="user_code"');
    expect(html).not.toContain(userCode);

    // The display document, shown once the code is typed: the key's fingerprint, the unverified name, the request.
    const shown = await asHuman(human, 'GET', `/v1/mandates/${mandateId}/display?user_code=${encodeURIComponent(userCode)}`);
    const { display, display_hash } = await readJson(shown);
    expect(shown.status).toBe(200);
    expect(display).toMatchObject({
      mandate_id: mandateId,
      agent: { agent_id: null, name: 'e2e first-contact agent', name_verified: false, key_thumbprint: key.jkt },
      spend_limit: SPEND,
      share_email: false,
      providers: [
        { provider: 'cloud', services: ['domain', 'worker-script'] },
        { provider: 'data', services: ['database'] },
      ],
    });
    expect(display_hash).toMatch(/^[0-9a-f]{64}$/);

    const approving = await asHuman(human, 'POST', `/v1/mandates/${mandateId}/approve`, { json: { user_code: userCode, display_hash } });
    const approved = await readJson(approving);
    expect(approving.status, JSON.stringify(approved)).toBe(200);
    expect(approved).toMatchObject({ mandate_id: mandateId, status: 'active', display_hash });
    expect(approved.agent_id).toMatch(/^agt_/);
    const agentId: string = approved.agent_id;

    // mandate_jws: the orchestrator's signature over what was approved, bound to the agent key.
    const jwks = createRemoteJWKSet(new URL(`${ORCH}/.well-known/jwks.json`));
    const { payload: signed, protectedHeader } = await jwtVerify(approved.mandate_jws, jwks, { issuer: ORCH });
    expect(protectedHeader.kid).toBeTruthy();
    expect(signed).toMatchObject({ mandate_id: mandateId, agent_id: agentId, sub: human.subject, display_hash, cnf: { jkt: key.jkt } });

    // The agent polls again after `interval` and learns its agent id; reads of a decided mandate are never slowed.
    await sleep(Math.max(0, pending.interval * 1000 - (Date.now() - lastPollAt)) + 100);
    const decided = await asAgent(key, ORCH, 'GET', `/v1/mandates/${mandateId}`);
    const active = await readJson(decided);
    expect(decided.status, JSON.stringify(active)).toBe(200);
    expect(active).toMatchObject({ mandate_id: mandateId, status: 'active', agent_id: agentId, mandate_jws: approved.mandate_jws });
    expect(active.approver_email_hint).toMatch(/^d.*@oap\.local$/);
    expect(active.approver_email_hint).not.toBe('demo@oap.local');
    const again = await asAgent(key, ORCH, 'GET', `/v1/mandates/${mandateId}`);
    expect(again.status).toBe(200);

    for (const provider of ['cloud', 'data'] as const) {
      const base = urls[provider];
      const as = await discover(base);
      expect(new URL(as.issuer).href).toBe(new URL(base).href);
      expect(as.grant_types_supported).toContain(JWT_BEARER);
      expect(as.dpop_signing_alg_values_supported).toEqual(expect.arrayContaining(['EdDSA']));

      // The attestation (§2.2): an ID-JAG for this provider only, bound to the agent key.
      const res = await asAgent(key, ORCH, 'POST', '/v1/attestations', { mandate_id: mandateId, provider });
      const issued = await readJson(res);
      expect(res.status, JSON.stringify(issued)).toBe(200);
      expect(issued.expires_in).toBeGreaterThan(0);
      expect(issued.expires_in).toBeLessThanOrEqual(300);
      const header = decodeProtectedHeader(issued.attestation);
      expect(header.typ).toBe('oauth-id-jag+jwt');
      const { payload: claims } = await jwtVerify(issued.attestation, jwks, { issuer: ORCH, audience: as.issuer, typ: 'oauth-id-jag+jwt' });
      expect(claims).toMatchObject({ aud: as.issuer, client_id: agentId, act: { sub: agentId }, cnf: { jkt: key.jkt } });
      expect(claims.sub).toBeTruthy();
      expect(claims.sub).not.toBe(human.subject);
      expect(claims.exp! - claims.iat!).toBeLessThanOrEqual(300);
      expect(claims.email).toBeUndefined();
      const details = claims.authorization_details as Json[];
      expect(details).toHaveLength(1);
      expect(details[0]).toMatchObject({
        type: 'oap_mandate',
        mandate_id: mandateId,
        services: provider === 'cloud' ? ['domain', 'worker-script'] : ['database'],
        spend_limit: SPEND,
      });

      // The token (§2.3), through oauth4webapi with its own DPoP handle on the agent's key pair.
      const { token, DPoP } = await grantToken(as, agentId, key, issued.attestation);
      expect(token.token_type).toBe('dpop');
      expect(token.expires_in).toBeGreaterThan(0);
      expect(token.expires_in).toBeLessThanOrEqual(900);
      expect(token.refresh_token).toBeUndefined();
      expect(token.account_id).toMatch(/^acct_/);
      // This test is the demo principal's first use of each provider in the e2e state.
      expect(token.account_created).toBe(true);
      expect((token.authorization_details as Json[])[0]).toMatchObject({ type: 'oap_mandate', mandate_id: mandateId });
      expect(decodeJwt(token.access_token)).toMatchObject({ cnf: { jkt: key.jkt } });

      // The token at work: the agent reads its own audit events at the provider.
      const audit = await oauth.protectedResourceRequest(token.access_token, 'GET', new URL(`${base}/v1/audit`), undefined, undefined, { DPoP, ...insecure });
      const text = await audit.text();
      expect(audit.status, text).toBe(200);
      const events = auditLines(text);
      expect(events.some((e) => e.action === 'token.issue' && e.outcome === 'succeeded' && e.actor?.type === 'agent' && e.actor?.id === agentId && e.mandate_id === mandateId)).toBe(true);
      expect(events.every((e) => e.actor?.id === agentId)).toBe(true);
    }

    // A mandate only for cloud does not attest the agent to data.
    const cloudOnly = await requestMandate(key, { scope: [{ provider: 'cloud', services: ['domain'] }] });
    await approve(human, cloudOnly.mandate_id);
    await expectProblem(await asAgent(key, ORCH, 'POST', '/v1/attestations', { mandate_id: cloudOnly.mandate_id, provider: 'data' }), 403, 'provider_not_in_scope');
    expect(await attest(key, cloudOnly.mandate_id, 'cloud')).toBeTruthy();
  });

  it('revocation of a mandate, then of an agent, reaches the provider and the orchestrator', { timeout: 120_000 }, async () => {
    const human = await demoSession();
    const key = await newAgentKey();
    const agentId = await registerAgent(human, key, 'e2e revocation agent');
    const cloud = await discover(urls.cloud);

    // A live token under a mandate.
    const first = await requestMandate(key, { scope: [{ provider: 'cloud', services: ['domain'] }] });
    await approve(human, first.mandate_id);
    const { token } = await grantToken(cloud, agentId, key, await attest(key, first.mandate_id, 'cloud'));
    expect(await introspect(urls.cloud, key, token.access_token)).toMatchObject({ active: true, client_id: agentId, cnf: { jkt: key.jkt } });
    expect((await auditWithToken(urls.cloud, key, token.access_token)).status).toBe(200);

    // The principal revokes the mandate: at once at the orchestrator, within seconds at the provider.
    const revoking = await asHuman(human, 'POST', `/v1/mandates/${first.mandate_id}/revoke`);
    const revoked = await readJson(revoking);
    expect(revoking.status, JSON.stringify(revoked)).toBe(200);
    expect(revoked).toMatchObject({ mandate_id: first.mandate_id, status: 'revoked' });
    expect(revoked.revoked_at).toBeTruthy();
    await expectProblem(await asAgent(key, ORCH, 'POST', '/v1/attestations', { mandate_id: first.mandate_id, provider: 'cloud' }), 403, 'mandate_inactive');
    expect(await waitInactive(urls.cloud, key, token.access_token)).toEqual({ active: false });
    await expectProblem(await auditWithToken(urls.cloud, key, token.access_token), 401, 'invalid_token');

    // A second mandate and token for the same agent; then the principal revokes the agent itself.
    const second = await requestMandate(key, { scope: [{ provider: 'cloud', services: ['domain'] }] });
    await approve(human, second.mandate_id);
    const { token: secondToken } = await grantToken(cloud, agentId, key, await attest(key, second.mandate_id, 'cloud'));
    expect(secondToken.account_created).toBe(false);
    expect(await introspect(urls.cloud, key, secondToken.access_token)).toMatchObject({ active: true });

    const revokingAgent = await asHuman(human, 'POST', `/v1/agents/${agentId}/revoke`);
    const revokedAgent = await readJson(revokingAgent);
    expect(revokingAgent.status, JSON.stringify(revokedAgent)).toBe(200);
    expect(revokedAgent).toMatchObject({ agent_id: agentId, status: 'revoked' });
    await expectProblem(await asAgent(key, ORCH, 'GET', `/v1/mandates/${second.mandate_id}`), 401, 'agent_revoked');
    await expectProblem(await asAgent(key, ORCH, 'POST', '/v1/attestations', { mandate_id: second.mandate_id, provider: 'cloud' }), 401, 'agent_revoked');
    expect(await waitInactive(urls.cloud, key, secondToken.access_token)).toEqual({ active: false });
    await expectProblem(await auditWithToken(urls.cloud, key, secondToken.access_token), 401, 'invalid_token');

    // The principal sees the mandate ended with its agent.
    const read = await asHuman(human, 'GET', `/v1/mandates/${second.mandate_id}`);
    expect(read.status).toBe(200);
    expect(await readJson(read)).toMatchObject({ status: 'revoked' });
  });

  it('links a provider account with the same verified email only after its human confirms', { timeout: 120_000 }, async () => {
    const existing = existingCredentials('cloud');
    await signUpVerified(ORCH, existing.email, 'linking-e2e-password');
    const human = await signIn(ORCH, existing.email, 'linking-e2e-password');
    const key = await newAgentKey();
    const agentId = await registerAgent(human, key, 'e2e linking agent');

    const mandate = await requestMandate(key, { scope: [{ provider: 'cloud', services: ['domain'] }], share_email: true });
    const shown = await readJson(await asHuman(human, 'GET', `/v1/mandates/${mandate.mandate_id}/display`));
    expect(shown.display).toMatchObject({ share_email: true, email_shared: existing.email });
    await approve(human, mandate.mandate_id);

    const attestation = await attest(key, mandate.mandate_id, 'cloud');
    expect(decodeJwt(attestation)).toMatchObject({ email: existing.email, email_verified: true });

    // The provider does not attach silently: the agent is told where its human must confirm.
    const cloud = await discover(urls.cloud);
    const { client, response } = await tokenRequest(cloud, agentId, key, attestation);
    expect(response.status).toBe(400);
    expect(response.headers.get('cache-control')).toBe('no-store');
    const refusal = await oauth.processGenericTokenEndpointResponse(cloud, client, response).then(
      () => null,
      (error: unknown) => error,
    );
    expect(refusal).toBeInstanceOf(oauth.ResponseBodyError);
    const linkError = refusal as oauth.ResponseBodyError;
    expect(linkError.error).toBe('account_link_required');
    const linkUrl = String((linkError.cause as Json).link_url);
    expect(linkUrl.startsWith(`${urls.cloud}/link/`)).toBe(true);
    const linkId = new URL(linkUrl).pathname.split('/').pop()!;
    expect(linkId).toMatch(/^lnk_/);

    // The account's human signs in at the provider, sees who asks, and confirms.
    const owner = await signIn(urls.cloud, existing.email, existing.password);
    expect(owner.cookie).toMatch(/^oap_cloud_session=/);
    const page = await fetch(linkUrl, { headers: { cookie: owner.cookie, accept: 'text/html' }, redirect: 'manual' });
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(await page.text()).toContain(ORCH);
    await expectProblem(await asHuman(owner, 'POST', `/v1/links/${linkId}/confirm`, { csrf: false }), 403, 'csrf_failed');
    const confirming = await asHuman(owner, 'POST', `/v1/links/${linkId}/confirm`);
    const link = await readJson(confirming);
    expect(confirming.status, JSON.stringify(link)).toBe(200);
    expect(link).toMatchObject({ link_id: linkId, status: 'linked', account_id: owner.subject, orchestrator: ORCH });

    // The agent's retry with a fresh attestation lands in the existing account.
    const { token } = await grantToken(cloud, agentId, key, await attest(key, mandate.mandate_id, 'cloud'));
    expect(token.token_type).toBe('dpop');
    expect(token.account_created).toBe(false);
    expect(token.account_id).toBe(owner.subject);

    const trail = await asHuman(owner, 'GET', '/v1/audit');
    expect(trail.status).toBe(200);
    expect(auditLines(await trail.text()).some((e) => e.action === 'account.link' && e.outcome === 'succeeded')).toBe(true);
  });

  it('refuses an agent approving its own mandate, a missing CSRF token and a stranger, changing nothing', { timeout: 120_000 }, async () => {
    const human = await demoSession();
    const key = await newAgentKey();
    await registerAgent(human, key, 'e2e refusal agent');
    const mandate = await requestMandate(key, { scope: [{ provider: 'cloud', services: ['domain'] }] });
    const id: string = mandate.mandate_id;
    const stillPending = async () => {
      const res = await asHuman(human, 'GET', `/v1/mandates/${id}`);
      const body = await readJson(res);
      expect(res.status, JSON.stringify(body)).toBe(200);
      expect(body).toMatchObject({ status: 'pending', mandate_jws: null });
    };

    // The approval is a non-agentic surface: an agent credential never approves.
    await expectProblem(await asAgent(key, ORCH, 'POST', `/v1/mandates/${id}/approve`, {}), 401, 'unauthorized');
    await expectProblem(await asAgent(key, ORCH, 'POST', `/v1/mandates/${id}/approve`, { user_code: mandate.user_code }), 401, 'unauthorized');
    await stillPending();

    // A session without its CSRF token, or from another origin, changes nothing.
    await expectProblem(await asHuman(human, 'POST', `/v1/mandates/${id}/approve`, { json: {}, csrf: false }), 403, 'csrf_failed');
    await expectProblem(await asHuman(human, 'POST', `/v1/mandates/${id}/approve`, { json: {}, headers: { origin: 'http://attacker.invalid' } }), 403, 'csrf_failed');
    await stillPending();

    // Another principal (and its agent, and an unknown key) learns nothing: 404, never 403.
    const email = `stranger-${crypto.randomUUID().slice(0, 8)}@oap.local`;
    await signUpVerified(ORCH, email, 'stranger-e2e-password');
    const stranger = await signIn(ORCH, email, 'stranger-e2e-password');
    await expectProblem(await asHuman(stranger, 'GET', `/v1/mandates/${id}`), 404, 'not_found');
    await expectProblem(await asHuman(stranger, 'GET', `/v1/mandates/${id}/display`), 404, 'not_found');
    await expectProblem(await asHuman(stranger, 'POST', `/v1/mandates/${id}/approve`, { json: {} }), 404, 'not_found');
    await expectProblem(await asHuman(stranger, 'POST', `/v1/mandates/${id}/revoke`), 404, 'not_found');
    const strangerKey = await newAgentKey();
    await registerAgent(stranger, strangerKey, 'e2e stranger agent');
    await expectProblem(await asAgent(strangerKey, ORCH, 'GET', `/v1/mandates/${id}`), 404, 'not_found');
    await expectProblem(await asAgent(await newAgentKey(), ORCH, 'GET', `/v1/mandates/${id}`), 404, 'not_found');
    await stillPending();
  });
});
