// The principal's dashboard pages through the Worker's real fetch: who may see
// them, what a form post may change (CSRF, the fresh sign-in for a raised
// limit), and that each form reaches the same domain function as its API.
// The browser walks through them end to end in test/e2e/dashboard.test.ts.
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { dpopProof, newAgentKey } from '../support/agent-keys';
import { asProvider, captureWithReceipt, chargeBody, subjectAt, type AuthorizedCharge } from '../support/fake-provider';
import { activeMandate, agentClient, call, mandateBody, newPrincipal, ORCHESTRATOR, type Human } from '../support/orchestrator-client';

const DB = (env as unknown as TestEnv).DB;
const PAGES = ['/dashboard', '/dashboard/notifications', '/dashboard/agents', '/dashboard/mandates', '/dashboard/limits', '/dashboard/charges', '/dashboard/audit', '/dashboard/disputes'];

const page = (human: Human, path: string) => call(path, { headers: { cookie: human.cookie, accept: 'text/html' }, redirect: 'manual' });

/** A form post as a browser sends it: urlencoded, the session cookie, the CSRF token as a field. */
function post(human: Pick<Human, 'cookie' | 'csrf'>, path: string, fields: Record<string, string>, options: { csrf?: boolean; origin?: string } = {}) {
  const body = new URLSearchParams({ ...(options.csrf === false ? {} : { csrf_token: human.csrf }), ...fields });
  return call(path, {
    method: 'POST',
    headers: { cookie: human.cookie, 'content-type': 'application/x-www-form-urlencoded', ...(options.origin ? { origin: options.origin } : {}) },
    body: body.toString(),
    redirect: 'manual',
  });
}

async function monthlyLimit(human: Human): Promise<number> {
  const { data } = (await (await call('/v1/limits', { headers: { cookie: human.cookie } })).json()) as { data: { scope: string; limit: { amount: number } }[] };
  return data.find((l) => l.scope === 'principal')!.limit.amount;
}

/** An authorized charge of `amount` under an active mandate, captured with a signed receipt when `capture`. */
async function charged(human: Human, amount: number, capture: boolean) {
  const { agent, mandate_id } = await activeMandate(human);
  const sub = await subjectAt(agent, mandate_id, 'cloud');
  const res = await asProvider('cloud', 'POST', '/v1/charges', await chargeBody(agent.key, { provider: 'cloud', mandate_id, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount }));
  const authorized = (await res.json()) as AuthorizedCharge;
  expect(res.status).toBe(201);
  if (capture) expect((await captureWithReceipt('cloud', authorized, { agent_id: agent.agent_id, mandate_id, amount, resource_id: 'res_dashboard' })).status).toBe(200);
  return { agent, mandate_id, charge_id: authorized.charge_id };
}

describe('dashboard pages', () => {
  it('sends a signed-out visitor to the sign-in page with the way back', async () => {
    for (const path of PAGES) {
      const res = await call(path, { redirect: 'manual' });
      expect(res.status, path).toBe(303);
      expect(res.headers.get('location')).toBe(`/sign-in?next=${encodeURIComponent(path)}`);
    }
    const form = await call('/dashboard/agents/agt_x/revoke', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'csrf_token=x', redirect: 'manual' });
    expect(form.status).toBe(303);
    expect(form.headers.get('location')).toBe(`/sign-in?next=${encodeURIComponent('/dashboard/agents')}`);
  });

  it('renders every page with one h1, a main landmark, a skip link, no script, and no framing', async () => {
    const human = await newPrincipal();
    for (const path of PAGES) {
      const res = await page(human, path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get('content-type')).toMatch(/^text\/html/);
      expect(res.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
      expect(res.headers.get('content-security-policy')).not.toContain('script-src');
      const html = await res.text();
      expect(html.match(/<h1[ >]/g), path).toHaveLength(1);
      expect(html).toContain('<main id="main">');
      expect(html).toContain('<a class="skip-link" href="#main">');
      expect(html).toContain(`<a href="${path}" aria-current="page">`);
      expect(html).not.toContain('<script');
    }
  });

  it('shows this month’s spend against the monthly limit and the mandate’s, by provider and by agent', async () => {
    const human = await newPrincipal();
    const { agent } = await charged(human, 1044, false);
    const html = await (await page(human, '/dashboard')).text();
    expect(html).toContain('<strong>$10.44</strong> of $100.00 (10 %)');
    expect(html).toContain('<strong>$10.44</strong> of $50.00 (20 %)');
    expect(html).toContain('OAP Cloud');
    expect(html).toContain(agent.agent_id);
    expect(html).toContain('style="width:20%"');
  });
});

describe('dashboard forms', () => {
  it('refuses a post without the CSRF token or from another origin, and changes nothing (cross-site request forgery)', async () => {
    const human = await newPrincipal();
    const missing = await post(human, '/dashboard/limits', { amount: '10.00' }, { csrf: false });
    expect(missing.status).toBe(403);
    expect(((await missing.json()) as { code: string }).code).toBe('csrf_failed');
    const foreign = await post(human, '/dashboard/limits', { amount: '10.00' }, { origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
    expect(await monthlyLimit(human)).toBe(10_000);
  });

  it('registers an agent whose key signed the proof, refuses a proof by another key, and revokes', async () => {
    const human = await newPrincipal();
    const key = await newAgentKey();
    const other = await newAgentKey();
    const forged = await post(human, '/dashboard/agents', { name: 'forged', public_jwk: JSON.stringify(key.jwk), proof: await dpopProof(other, 'POST', `${ORCHESTRATOR}/v1/agents`) });
    expect(forged.status).toBe(401);
    const page401 = await forged.text();
    expect(page401).toContain('role="alert"');
    expect(page401).toContain('not signed by public_jwk');
    expect(page401).toContain('value="forged"');

    const registered = await post(human, '/dashboard/agents', { name: 'form agent', public_jwk: JSON.stringify(key.jwk), proof: await dpopProof(key, 'POST', `${ORCHESTRATOR}/v1/agents`) });
    expect(registered.status).toBe(303);
    expect(registered.headers.get('location')).toBe('/dashboard/agents?done=agent_registered');
    const { data } = (await (await call('/v1/agents', { headers: { cookie: human.cookie } })).json()) as { data: { agent_id: string; name: string; status: string }[] };
    expect(data.map((a) => a.name)).toEqual(['form agent']);

    const agent = agentClient(key, data[0]!.agent_id);
    expect((await agent.request('POST', '/v1/mandates', mandateBody())).status).toBe(201);
    const revoked = await post(human, `/dashboard/agents/${data[0]!.agent_id}/revoke`, {});
    expect(revoked.status).toBe(303);
    expect(await (await page(human, '/dashboard/agents?done=agent_revoked')).text()).toContain('The agent is revoked');
    const refused = await agent.request('POST', '/v1/mandates', mandateBody());
    expect(refused.status).toBe(401);
    expect(((await refused.json()) as { code: string }).code).toBe('agent_revoked');
  });

  it('asks for amounts on the approval page in the currency the agent asked in, in its minor unit (cents, no yen fractions), and approves them so', async () => {
    const human = await newPrincipal();
    const { agent } = await activeMandate(human);
    for (const [currency, shown, typed, approved] of [
      ['eur', '50.00', '40.50', 4050],
      ['jpy', '5000', '3000', 3000],
    ] as const) {
      const terms = mandateBody({ spend_limit: { amount: 5000, currency, period: 'month' }, scope: [{ provider: 'cloud', services: ['domain'] }] });
      const { mandate_id } = (await (await agent.request('POST', '/v1/mandates', terms)).json()) as { mandate_id: string };
      const html = await (await page(human, `/mandates/${mandate_id}/approval`)).text();
      expect(html).toContain(`name="currency" value="${currency}"`);
      expect(html).toContain(`Monthly limit in ${currency.toUpperCase()}`);
      expect(html).toContain(`name="spend_limit" type="number" min="0" step="${currency === 'jpy' ? '1' : '0.01'}" value="${shown}"`);
      const displayHash = /name="display_hash" value="([^"]+)"/.exec(html)![1]!;
      // A fraction the currency does not have is refused back to the page, and nothing is approved.
      if (currency === 'jpy') {
        const fraction = await post(human, `/v1/mandates/${mandate_id}/approve`, { display_hash: displayHash, currency, spend_limit: '12.5' });
        expect(fraction.headers.get('location')).toBe(`/mandates/${mandate_id}/approval?error=invalid_request`);
      }
      const res = await post(human, `/v1/mandates/${mandate_id}/approve`, { display_hash: displayHash, currency, spend_limit: typed });
      expect(res.status, await res.clone().text()).toBe(303);
      const mandate = (await (await call(`/v1/mandates/${mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { status: string; spend_limit: unknown };
      expect(mandate).toMatchObject({ status: 'active', spend_limit: { amount: approved, currency, period: 'month' } });
    }
  });

  it('lists a pending mandate with a link to its approval page, and revokes an active one', async () => {
    const human = await newPrincipal();
    const { agent, mandate_id } = await activeMandate(human);
    const pending = (await (await agent.request('POST', '/v1/mandates', mandateBody({ description: 'A second request' }))).json()) as { mandate_id: string };
    const html = await (await page(human, '/dashboard/mandates')).text();
    expect(html).toContain(`href="/mandates/${pending.mandate_id}/approval">Review and decide</a>`);
    expect(html).toContain(`action="/dashboard/mandates/${mandate_id}/revoke"`);
    const res = await post(human, `/dashboard/mandates/${mandate_id}/revoke`, {});
    expect(res.headers.get('location')).toBe('/dashboard/mandates?done=mandate_revoked');
    const mandate = (await (await call(`/v1/mandates/${mandate_id}`, { headers: { cookie: human.cookie } })).json()) as { status: string };
    expect(mandate.status).toBe('revoked');
  });

  it('extends an active mandate: a request for the same terms, in force once the human approves it, that its agent then finds; a forged post (no CSRF token) changes nothing', async () => {
    const human = await newPrincipal();
    // It runs 300 days (orchestrator-client.ts inAYear): a year from now is the one length that ends later.
    const { agent, mandate_id } = await activeMandate(human);
    const asAgent = async (id: string) => (await (await agent.request('GET', `/v1/mandates/${id}`)).json()) as Record<string, any>;
    const mandates = async () => ((await (await call('/v1/mandates', { headers: { cookie: human.cookie } })).json()) as { data: unknown[] }).data.length;
    const original = await asAgent(mandate_id);
    const html = await (await page(human, '/dashboard/mandates')).text();
    expect(html).toContain(`action="/dashboard/mandates/${mandate_id}/extend"`);
    expect(html).toContain('<option value="365" selected="">a year from now</option>');
    expect(html).not.toContain('<option value="90"');

    // Refused, and nothing asked for: a length not offered, one that ends sooner than the mandate, a post without the CSRF token.
    const odd = await post(human, `/dashboard/mandates/${mandate_id}/extend`, { days: '400' });
    expect(odd.status).toBe(422);
    expect(await odd.text()).toContain('days must be one of 30, 90, 365');
    const sooner = await post(human, `/dashboard/mandates/${mandate_id}/extend`, { days: '90' });
    expect(sooner.status).toBe(422);
    expect(await sooner.text()).toContain('90 days from now does not end a day past this mandate');
    const forged = await post(human, `/dashboard/mandates/${mandate_id}/extend`, { days: '365' }, { csrf: false });
    expect(forged.status).toBe(403);
    expect(await mandates()).toBe(1);

    const extended = await post(human, `/dashboard/mandates/${mandate_id}/extend`, { days: '365' });
    expect(extended.status).toBe(303);
    const extensionId = /^\/mandates\/(mdt_[^/]+)\/approval$/.exec(extended.headers.get('location')!)![1]!;
    // Asked on the agent's behalf: the agent can read it, and the mandate stays in force meanwhile.
    const asked = await asAgent(extensionId);
    expect(asked).toMatchObject({ status: 'pending', supersedes: mandate_id, agent_id: agent.agent_id, description: original.description, scope: original.scope, spend_limit: original.spend_limit });
    expect(Date.parse(asked.expires_at) - Date.now()).toBeGreaterThan(364 * 86_400_000);
    expect(await asAgent(mandate_id)).toMatchObject({ status: 'active', superseded_by: null });
    // While it waits, the page sends the human to decide it rather than offering to ask again.
    const waiting = await (await page(human, '/dashboard/mandates')).text();
    expect(waiting).toContain(`<a href="/mandates/${extensionId}/approval">A request to change this mandate waits for your decision</a>`);
    expect(waiting).not.toContain(`action="/dashboard/mandates/${mandate_id}/extend"`);
    // The form sent again (a second click, a reload) asks nothing more: the human goes on to the request that waits.
    const twice = await post(human, `/dashboard/mandates/${mandate_id}/extend`, { days: '365' });
    expect(twice.headers.get('location')).toBe(`/mandates/${extensionId}/approval`);
    expect(await mandates()).toBe(2);
    // The agent asks for one too: once the human's is approved, the agent's can no longer be, and is denied.
    const agents = (await (await agent.request('POST', '/v1/mandates', mandateBody({ supersedes: mandate_id }))).json()) as { mandate_id: string };

    // A later end widens no limit: approved without a fresh sign-in.
    await DB.prepare('UPDATE sessions SET auth_time = auth_time - 600 WHERE subject_id = ?1').bind(human.principal_id).run();
    expect((await call(`/v1/mandates/${extensionId}/approve`, { method: 'POST', headers: human.headers(), body: '{}' })).status).toBe(200);
    await DB.prepare('UPDATE sessions SET auth_time = auth_time + 600 WHERE subject_id = ?1').bind(human.principal_id).run();
    expect(await asAgent(mandate_id)).toMatchObject({ status: 'superseded', superseded_by: extensionId });
    expect(await asAgent(agents.mandate_id)).toMatchObject({ status: 'denied' });
    expect(await asAgent(extensionId)).toMatchObject({ status: 'active', superseded_by: null });
    // The request is the human's in the trail, not the agent's.
    const trail = (await (await call('/v1/audit', { headers: { cookie: human.cookie } })).text()).trim().split('\n').map((l) => JSON.parse(l) as { action: string; target: string; reason: string | null; actor: { type: string } });
    expect(trail.find((e) => e.action === 'mandate.request' && e.target === extensionId)?.actor.type).toBe('principal');
    expect(trail.find((e) => e.action === 'mandate.deny' && e.target === agents.mandate_id)?.reason).toBe('superseded_by_another');

    // A mandate no longer in force is not extended; nor is another principal's, which does not exist for them.
    const again = await post(human, `/dashboard/mandates/${mandate_id}/extend`, { days: '365' });
    expect(again.status).toBe(409);
    expect(await again.text()).toContain('only an active mandate can be changed');
    const stranger = await newPrincipal();
    expect((await post(stranger, `/dashboard/mandates/${extensionId}/extend`, { days: '365' })).status).toBe(404);
    expect(await mandates()).toBe(3);

    // The JSON API does the same: 201 with the pending extension, 422 for a length not offered.
    const short = await activeMandate(human, undefined, { expires_at: new Date(Date.now() + 10 * 86_400_000).toISOString() });
    const viaApi = await call(`/v1/mandates/${short.mandate_id}/extend`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ days: 90 }) });
    expect(viaApi.status).toBe(201);
    expect(await viaApi.json()).toMatchObject({ status: 'pending', supersedes: short.mandate_id, agent_id: short.agent.agent_id });
    const unoffered = await call(`/v1/mandates/${short.mandate_id}/extend`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ days: 400 }) });
    expect(unoffered.status).toBe(422);
    expect(await mandates()).toBe(5);

    // Sent twice at once, the form still makes one request; and while the agent's own request waits, it makes none.
    const other = await activeMandate(human, undefined, { expires_at: new Date(Date.now() + 10 * 86_400_000).toISOString() });
    const both = await Promise.all([0, 1].map(() => post(human, `/dashboard/mandates/${other.mandate_id}/extend`, { days: '30' })));
    expect(both.map((r) => r.status)).toEqual([303, 303]);
    expect(both[0]!.headers.get('location')).toBe(both[1]!.headers.get('location'));
    expect(await mandates()).toBe(7);
    const third = await activeMandate(human, undefined, { expires_at: new Date(Date.now() + 10 * 86_400_000).toISOString() });
    const agentsOwn = (await (await third.agent.request('POST', '/v1/mandates', mandateBody({ supersedes: third.mandate_id }))).json()) as { mandate_id: string };
    // The agent's request asks other terms: the human's is refused, never swapped for the agent's; that one is decided first.
    const onTop = await post(human, `/dashboard/mandates/${third.mandate_id}/extend`, { days: '30' });
    expect(onTop.status).toBe(409);
    expect(await onTop.text()).toContain('Another request to change this mandate waits for your decision');
    expect(await (await third.agent.request('GET', `/v1/mandates/${agentsOwn.mandate_id}`)).json()).toMatchObject({ status: 'pending', supersedes: third.mandate_id });
    expect(await mandates()).toBe(9);
    // Nothing is left routed to the requests that were never made.
    const routes = await DB.prepare('SELECT COUNT(*) AS n FROM mandate_routes WHERE principal_id = ?1').bind(human.principal_id).first<{ n: number }>();
    expect(routes!.n).toBe(9);
  });

  it('raises a mandate’s limits where a declined charge’s step_up_url leads: a request for the same mandate with higher limits, in force once approved, under which the charge then fits', async () => {
    const human = await newPrincipal();
    // A $50.00 mandate, at most $20.00 per charge at cloud.
    const { agent, mandate_id } = await activeMandate(human);
    const sub = await subjectAt(agent, mandate_id, 'cloud');
    const charge = async (mandateId: string, amount: number) =>
      asProvider('cloud', 'POST', '/v1/charges', await chargeBody(agent.key, { provider: 'cloud', mandate_id: mandateId, agent_id: agent.agent_id, sub, service: 'domain', plan: 'com-1y', amount }));
    for (let i = 0; i < 2; i++) expect((await charge(mandate_id, 2000)).status).toBe(201);
    const declined = await charge(mandate_id, 2000);
    expect(declined.status).toBe(402);
    const stepUp = new URL(((await declined.json()) as { step_up_url: string }).step_up_url);
    expect(stepUp.pathname).toBe(`/mandates/${mandate_id}/approval`);
    // The Mandates page leads there too, for a human who raises before anything is declined.
    expect(await (await page(human, '/dashboard/mandates')).text()).toContain(`href="/mandates/${mandate_id}/approval#raise"`);
    const html = await (await page(human, stepUp.pathname)).text();
    expect(html).toContain(`action="/dashboard/mandates/${mandate_id}/raise"`);
    expect(html).toContain('name="spend_limit" type="number" min="0" step="0.01" value="50.00"');
    expect(html).toContain('name="max_per_charge_cloud" type="number" min="0" step="0.01" value="20.00"');
    const mandates = async () => ((await (await call('/v1/mandates', { headers: { cookie: human.cookie } })).json()) as { data: unknown[] }).data.length;

    // Refused back to the page, nothing asked: no limit higher, one lower, an amount that is not one, no CSRF token.
    for (const fields of [{ spend_limit: '50' }, { spend_limit: '100', max_per_charge_cloud: '10' }, { spend_limit: 'lots' }] as Record<string, string>[]) {
      const refused = await post(human, `/dashboard/mandates/${mandate_id}/raise`, { currency: 'usd', ...fields });
      expect(refused.headers.get('location'), JSON.stringify(fields)).toBe(`/mandates/${mandate_id}/approval?error=raise_refused`);
    }
    expect((await post(human, `/dashboard/mandates/${mandate_id}/raise`, { spend_limit: '100' }, { csrf: false })).status).toBe(403);
    expect(await mandates()).toBe(1);

    const raised = await post(human, `/dashboard/mandates/${mandate_id}/raise`, { currency: 'usd', spend_limit: '100', max_per_charge_cloud: '20.00' });
    expect(raised.status).toBe(303);
    const successorId = /^\/mandates\/(mdt_[^/]+)\/approval$/.exec(raised.headers.get('location')!)![1]!;
    // Sent again, it asks nothing more; asking other limits while it waits is refused, and the page links to it instead.
    expect((await post(human, `/dashboard/mandates/${mandate_id}/raise`, { currency: 'usd', spend_limit: '100' })).headers.get('location')).toBe(`/mandates/${successorId}/approval`);
    expect((await post(human, `/dashboard/mandates/${mandate_id}/raise`, { currency: 'usd', spend_limit: '300' })).headers.get('location')).toBe(`/mandates/${mandate_id}/approval?error=request_waiting`);
    expect(await mandates()).toBe(2);
    const waitingPage = await (await page(human, `/mandates/${mandate_id}/approval`)).text();
    expect(waitingPage).toContain(`<a href="/mandates/${successorId}/approval">A request to change this mandate waits for your decision</a>`);
    expect(waitingPage).not.toContain(`action="/dashboard/mandates/${mandate_id}/raise"`);
    const successor = (await (await agent.request('GET', `/v1/mandates/${successorId}`)).json()) as Record<string, any>;
    expect(successor).toMatchObject({ status: 'pending', supersedes: mandate_id, spend_limit: { amount: 10_000, currency: 'usd' } });
    expect(successor.scope[0].max_per_charge).toEqual({ amount: 2000, currency: 'usd' });
    // Until approved the limit stands; once approved, the charge the old limit declined fits.
    expect((await charge(mandate_id, 2000)).status).toBe(402);
    // Raising a limit widens what the agent may spend: approving it needs a recent sign-in, even below the policy default.
    await DB.prepare('UPDATE sessions SET auth_time = auth_time - 600 WHERE subject_id = ?1').bind(human.principal_id).run();
    const stale = await call(`/v1/mandates/${successorId}/approve`, { method: 'POST', headers: human.headers(), body: '{}' });
    expect(stale.status).toBe(401);
    expect(await stale.json()).toMatchObject({ code: 'reauthentication_required' });
    await DB.prepare('UPDATE sessions SET auth_time = auth_time + 600 WHERE subject_id = ?1').bind(human.principal_id).run();
    expect((await call(`/v1/mandates/${successorId}/approve`, { method: 'POST', headers: human.headers(), body: '{}' })).status).toBe(200);
    expect((await (await agent.request('GET', `/v1/mandates/${mandate_id}`)).json()) as Record<string, any>).toMatchObject({ status: 'superseded', superseded_by: successorId });
    expect((await charge(successorId, 2000)).status).toBe(201);

    // The JSON API does the same: 201 with the request; a body naming no limit, or none higher, is 422.
    const other = await activeMandate(human);
    expect((await call(`/v1/mandates/${other.mandate_id}/raise`, { method: 'POST', headers: human.headers(), body: '{}' })).status).toBe(422);
    const same = await call(`/v1/mandates/${other.mandate_id}/raise`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ spend_limit: { amount: 5000, currency: 'usd' } }) });
    expect(same.status).toBe(422);
    const viaApi = await call(`/v1/mandates/${other.mandate_id}/raise`, { method: 'POST', headers: human.headers(), body: JSON.stringify({ max_per_charge: { cloud: { amount: 3000, currency: 'usd' } } }) });
    expect(viaApi.status).toBe(201);
    expect(await viaApi.json()).toMatchObject({ status: 'pending', supersedes: other.mandate_id, spend_limit: { amount: 5000 }, scope: [{ max_per_charge: { amount: 3000, currency: 'usd' } }] });
  });

  it('raises the monthly limit above the ceiling only after a fresh sign-in, shown as a step on the page (stale session)', async () => {
    const human = await newPrincipal();
    // Below the ceiling, an older sign-in is enough.
    await DB.prepare('UPDATE sessions SET auth_time = auth_time - 600 WHERE subject_id = ?1').bind(human.principal_id).run();
    expect((await post(human, '/dashboard/limits', { amount: '200' })).headers.get('location')).toBe('/dashboard/limits?done=limit_set');
    expect(await monthlyLimit(human)).toBe(20_000);

    const refused = await post(human, '/dashboard/limits', { amount: '600.00' });
    expect(refused.status).toBe(303);
    expect(refused.headers.get('location')).toBe('/dashboard/limits?step=reauthenticate&amount=600.00#reauthenticate');
    expect(await monthlyLimit(human)).toBe(20_000);
    const step = await (await page(human, '/dashboard/limits?step=reauthenticate&amount=600.00')).text();
    expect(step).toContain('Confirm it is you');
    expect(step).toContain('<form method="post" action="/session">');
    expect(step).toContain(`value="/dashboard/limits?amount=600.00"`);

    const signIn = await call('/session', {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ email: human.email, password: human.password, next: '/dashboard/limits?amount=600.00' }).toString(),
      redirect: 'manual',
    });
    expect(signIn.headers.get('location')).toBe('/dashboard/limits?amount=600.00');
    const cookie = signIn.headers.get('set-cookie')!.split(';')[0]!;
    const form = await (await call('/dashboard/limits?amount=600.00', { headers: { cookie } })).text();
    expect(form).toContain('value="600.00"');
    const csrf = /name="csrf_token" value="([^"]+)"/.exec(form)![1]!;
    expect((await post({ cookie, csrf }, '/dashboard/limits', { amount: '600.00' })).headers.get('location')).toBe('/dashboard/limits?done=limit_set');
    expect(await monthlyLimit(human)).toBe(60_000);
  });

  it('re-renders the limit form with the reason when the amount is not one', async () => {
    const human = await newPrincipal();
    const res = await post(human, '/dashboard/limits', { amount: 'lots' });
    expect(res.status).toBe(422);
    const html = await res.text();
    expect(html).toContain('Enter the limit in dollars');
    expect(html).toContain('value="lots"');
  });

  it('opens a dispute from a captured charge and shows the verdict in words, each check, and the evidence', async () => {
    const human = await newPrincipal();
    const { charge_id } = await charged(human, 1044, true);
    const list = await (await page(human, '/dashboard/disputes')).text();
    expect(list).toContain(`<label for="reason-${charge_id}">`);
    const res = await post(human, '/dashboard/disputes', { charge_id, reason: 'I never asked for this domain' });
    expect(res.status).toBe(303);
    const location = res.headers.get('location')!;
    expect(location).toMatch(/^\/dashboard\/disputes\/dsp_/);
    const verdict = await (await page(human, location)).text();
    expect(verdict).toContain('The agent acted within the scope you authorized. The charge stands.');
    expect(verdict).toContain('The mandate was active when the charge was made');
    expect(verdict).toContain(`href="/v1/disputes/${location.split('/').at(-1)}/evidence"`);
    const after = await (await page(human, '/dashboard/disputes')).text();
    expect(after).not.toContain(`<label for="reason-${charge_id}">`);
    expect(after).toContain('I never asked for this domain');
    // A second dispute of the same charge is refused, with the reason on the page.
    const again = await post(human, '/dashboard/disputes', { charge_id, reason: 'again' });
    expect(again.status).toBe(409);
    expect(await again.text()).toContain('disputed already');
  });

  it('filters the audit trail by agent (its own events and the charges made for it) and by outcome', async () => {
    const human = await newPrincipal();
    const first = await charged(human, 500, false);
    const second = await charged(human, 700, false);
    const html = await (await page(human, `/dashboard/audit?agent=${first.agent.agent_id}&action=charge.authorize`)).text();
    expect(html).toContain(first.charge_id);
    expect(html).not.toContain(second.charge_id);
    expect(html).toContain(`<option value="${first.agent.agent_id}" selected="">`);
    const refused = await (await page(human, '/dashboard/audit?outcome=refused')).text();
    expect(refused).not.toContain(first.charge_id);
  });
});
