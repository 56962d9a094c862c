// Account linking (PROTOCOL.md §2.3, §2.0): an orchestrator's principal whose
// verified email matches an existing human account is attached only after
// that human signs in here and confirms with CSRF; never from an agent
// credential, never on an unverified email.
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { ProblemSchema } from '../../workers/lib/problem';
import { dpopProof, newAgentKey, type AgentKey } from '../support/agent-keys';
import { newHuman, type ProviderHuman } from '../support/provider-humans';
import { call, obtainToken, ORCHESTRATOR, PROVIDER, signAttestation, tokenRequest, useFakeOrchestrator, type Attestation, type IssuedToken } from '../support/fake-orchestrator';

useFakeOrchestrator();

const testEnv = env as unknown as TestEnv & { PASSWORD_PEPPER: string };
const db = () => testEnv.DB;

type Human = ProviderHuman;

async function accountCount(): Promise<number> {
  return (await db().prepare('SELECT COUNT(*) AS n FROM accounts').first<{ n: number }>())!.n;
}

async function linkOf(sub: string) {
  return db().prepare('SELECT account_id, linked_via FROM account_links WHERE iss = ?1 AND sub = ?2').bind(ORCHESTRATOR, sub).first<{ account_id: string; linked_via: string }>();
}

/** An agent whose orchestrator shares this (verified) email: the provider asks for a link. */
async function linkRequired(human: Human): Promise<{ agent: AgentKey; attestation: Attestation; linkId: string; linkUrl: string }> {
  const agent = await newAgentKey();
  const attestation = await signAttestation({ agent, email: human.email, emailVerified: true });
  const before = await accountCount();
  const res = await tokenRequest(agent, attestation);
  expect(res.status).toBe(400);
  expect(res.headers.get('cache-control')).toBe('no-store');
  const body = (await res.json()) as { error: string; error_description: string; link_url: string };
  expect(body.error).toBe('account_link_required');
  expect(typeof body.error_description).toBe('string');
  expect(body.link_url).toMatch(/^http:\/\/127\.0\.0\.1:8788\/link\/lnk_[A-Za-z0-9]+$/);
  expect(await accountCount()).toBe(before);
  expect(await linkOf(attestation.sub)).toBeNull();
  const linkId = new URL(body.link_url).pathname.split('/').pop()!;
  return { agent, attestation, linkId, linkUrl: body.link_url };
}

function confirm(linkId: string, headers: Record<string, string>, body?: string) {
  return call(`/v1/links/${linkId}/confirm`, { method: 'POST', headers, ...(body !== undefined ? { body } : {}) });
}

/** A fresh attestation for the same principal and agent, traded for a token. */
async function retry(agent: AgentKey, attestation: Attestation, email: string) {
  const again = await signAttestation({ agent, sub: attestation.sub, agentId: attestation.agentId, mandateId: attestation.mandateId, email, emailVerified: true });
  return tokenRequest(agent, again);
}

async function expectProblem(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  const problem = ProblemSchema.parse(await res.json());
  expect(problem.code).toBe(code);
  return problem;
}

describe('account linking (PROTOCOL §2.3)', () => {
  it('asks for a link when a verified email matches an existing account, then attaches the principal once its human confirms', async () => {
    const human = await newHuman();
    const { agent, attestation, linkId } = await linkRequired(human);

    const res = await confirm(linkId, { cookie: human.cookie, 'x-csrf-token': human.csrf, accept: 'application/json' });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ link_id: linkId, status: 'linked', orchestrator: ORCHESTRATOR, account_id: human.account_id });
    expect(await linkOf(attestation.sub)).toMatchObject({ account_id: human.account_id, linked_via: 'link' });

    const before = await accountCount();
    const after = await retry(agent, attestation, human.email);
    expect(after.status).toBe(200);
    const token = (await after.json()) as IssuedToken;
    expect(token.account_id).toBe(human.account_id);
    expect(token.account_created).toBe(false);
    expect(await accountCount()).toBe(before);
  });

  it('gives a retrying agent the same link_url while the request is open', async () => {
    const human = await newHuman();
    const { agent, attestation, linkUrl } = await linkRequired(human);
    const res = await retry(agent, attestation, human.email);
    expect(res.status).toBe(400);
    expect(((await res.json()) as { link_url: string }).link_url).toBe(linkUrl);
  });

  it('refuses a confirmation without X-CSRF-Token (cross-site request forgery) with 403 csrf_failed, and links nothing', async () => {
    const human = await newHuman();
    const { attestation, linkId } = await linkRequired(human);
    await expectProblem(await confirm(linkId, { cookie: human.cookie }), 403, 'csrf_failed');
    await expectProblem(await confirm(linkId, { cookie: human.cookie, 'x-csrf-token': 'not-the-token' }), 403, 'csrf_failed');
    // A form post without its csrf_token field is refused too.
    await expectProblem(await confirm(linkId, { cookie: human.cookie, 'content-type': 'application/x-www-form-urlencoded' }, 'confirm=1'), 403, 'csrf_failed');
    expect(await linkOf(attestation.sub)).toBeNull();
  });

  it('refuses a confirmation from another origin even with the right CSRF token', async () => {
    const human = await newHuman();
    const { attestation, linkId } = await linkRequired(human);
    await expectProblem(await confirm(linkId, { cookie: human.cookie, 'x-csrf-token': human.csrf, origin: 'https://evil.example' }), 403, 'csrf_failed');
    expect(await linkOf(attestation.sub)).toBeNull();
  });

  it('never links from an agent credential: an agent’s DPoP token instead of a session gets 401', async () => {
    const human = await newHuman();
    const { attestation, linkId } = await linkRequired(human);
    // An agent with a working token of its own (another principal, no email shared).
    const agent = await newAgentKey();
    const { token } = await obtainToken({ agent });
    const url = `${PROVIDER}/v1/links/${linkId}/confirm`;
    const res = await confirm(linkId, {
      authorization: `DPoP ${token.access_token}`,
      dpop: await dpopProof(agent, 'POST', url, { accessToken: token.access_token }),
      'x-csrf-token': human.csrf,
    });
    expect(res.status).toBe(401);
    expect(res.headers.get('content-type')).toBe('application/problem+json');
    // The agent that asked for the link cannot confirm it either.
    const asker = await confirm(linkId, { authorization: `DPoP ${token.access_token}`, dpop: await dpopProof(agent, 'POST', url, { accessToken: token.access_token }) });
    expect(asker.status).toBe(401);
    expect(await linkOf(attestation.sub)).toBeNull();
  });

  it('does not let another human’s session confirm the link (404, not 403)', async () => {
    const human = await newHuman();
    const stranger = await newHuman();
    const { attestation, linkId } = await linkRequired(human);
    await expectProblem(await confirm(linkId, { cookie: stranger.cookie, 'x-csrf-token': stranger.csrf }), 404, 'not_found');
    expect(await linkOf(attestation.sub)).toBeNull();
    // Nor see its page.
    const page = await call(`/link/${linkId}`, { headers: { cookie: stranger.cookie } });
    expect(page.status).toBe(404);
    expect(await page.text()).not.toContain(attestation.sub);
  });

  it('never links on an unverified email: the same email with email_verified false gets a new account', async () => {
    const human = await newHuman();
    const agent = await newAgentKey();
    const attestation = await signAttestation({ agent, email: human.email, emailVerified: false });
    const before = await accountCount();
    const res = await tokenRequest(agent, attestation);
    expect(res.status).toBe(200);
    const token = (await res.json()) as IssuedToken;
    expect(token.account_created).toBe(true);
    expect(token.account_id).not.toBe(human.account_id);
    expect(await accountCount()).toBe(before + 1);
    expect((await linkOf(attestation.sub))?.account_id).toBe(token.account_id);
  });

  it('does not offer a link to an existing account whose own email is unverified', async () => {
    const human = await newHuman({ verified: false });
    const agent = await newAgentKey();
    const res = await tokenRequest(agent, await signAttestation({ agent, email: human.email, emailVerified: true }));
    expect(res.status).toBe(200);
    const token = (await res.json()) as IssuedToken;
    expect(token.account_id).not.toBe(human.account_id);
  });

  it('renders the link page for the account’s human, naming the orchestrator, with frame-ancestors none (no clickjacking)', async () => {
    const human = await newHuman();
    const { attestation, linkId } = await linkRequired(human);
    const res = await call(`/link/${linkId}`, { headers: { cookie: human.cookie } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/html/);
    expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await res.text();
    expect(html).toContain(ORCHESTRATOR);
    expect(html).toContain(attestation.agentId);
    expect(html).toContain(human.csrf);
  });

  it('sends a visitor without a session to sign in instead of showing the link page', async () => {
    const human = await newHuman();
    const { linkId } = await linkRequired(human);
    const res = await call(`/link/${linkId}`, { redirect: 'manual' });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toContain('/sign-in');
  });

  it('records the link in the human’s audit trail (account.link), readable with the session', async () => {
    const human = await newHuman();
    const { linkId } = await linkRequired(human);
    expect((await confirm(linkId, { cookie: human.cookie, 'x-csrf-token': human.csrf })).status).toBe(200);
    const res = await call('/v1/audit', { headers: { cookie: human.cookie } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^application\/jsonl/);
    const events = (await res.text())
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { action: string; outcome: string; actor: { type: string; id: string }; target: string | null });
    const link = events.find((e) => e.action === 'account.link');
    expect(link).toMatchObject({ outcome: 'succeeded', actor: { type: 'principal', id: human.account_id }, target: ORCHESTRATOR });
    // The agent's refused attempt that asked for the link is in the same trail.
    expect(events.some((e) => e.action === 'token.issue' && e.outcome === 'refused')).toBe(true);
  });

  it('does not confirm the same link twice', async () => {
    const human = await newHuman();
    const { linkId } = await linkRequired(human);
    const headers = { cookie: human.cookie, 'x-csrf-token': human.csrf };
    expect((await confirm(linkId, headers)).status).toBe(200);
    const again = await confirm(linkId, headers);
    expect(again.status).toBe(409);
    expect(again.headers.get('content-type')).toBe('application/problem+json');
  });
});
