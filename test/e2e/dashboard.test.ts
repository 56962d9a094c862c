// The human's screens in headless Chromium with JavaScript off, against the
// three running Workers (DESIGN.md "The human's screens"): a human signs in on
// the sign-in page, registers an agent, approves its mandate with a lowered
// limit, sees the agent's spend move, disputes the charge, extends the mandate,
// revokes the agent, and the agent is refused. Each page is screenshotted (wide and narrow) into
// test-results/screenshots/ and checked for the basic accessibility facts.
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { dpopProof, newAgentKey } from '../support/agent-keys';
import { accessibilityProblems } from './accessibility-probe.js';
import { asAgent, expectProblem, inDays, providerAccessToken, readJson, signedPaidCall, signUpVerified, sleep } from './support';

const urls = inject('urls');
const ORCH = urls.orchestrator;
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SHOTS = 'test-results/screenshots';
const PASSWORD = 'dashboard test password';

let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`No Chromium at ${CHROMIUM}: apt-get install -y chromium (.ci/run does), or set CHROMIUM_PATH`);
  mkdirSync(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM });
});

afterAll(async () => {
  await browser?.close();
});

/** Checks the page and keeps a full-page screenshot of it under `name`. */
async function look(page: Page, name: string) {
  expect(await page.evaluate(accessibilityProblems), `${name}: ${page.url()}`).toEqual([]);
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

describe('the dashboard in a browser without JavaScript', () => {
  it('from sign-in to a revoked agent: approve with a lowered limit, see the spend, dispute, revoke', { timeout: 240_000 }, async () => {
    const email = `dash-${crypto.randomUUID().slice(0, 8)}@example.test`;
    await signUpVerified(ORCH, email, PASSWORD);
    const context = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
    const page = await context.newPage();

    // Signed out, a dashboard page sends the human to sign in and back.
    await page.goto(`${ORCH}/dashboard`);
    expect(page.url()).toBe(`${ORCH}/sign-in?next=%2Fdashboard`);
    await look(page, '01-sign-in');
    await page.getByLabel('Email').fill(email);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    expect(page.url()).toBe(`${ORCH}/dashboard`);
    await expect.poll(() => page.getByRole('heading', { level: 1 }).textContent()).toMatch(/^Spending in \w+ \d{4}$/);
    await look(page, '02-overview-empty');

    // Keyboard: the first Tab reaches the skip link, which moves to the main content.
    await page.keyboard.press('Tab');
    expect(await page.evaluate('document.activeElement.textContent.trim()')).toBe('Skip to main content');
    await page.keyboard.press('Enter');
    // Following the link is the browser's own step after the key press: read once it has happened, not before.
    await expect.poll(() => page.url()).toBe(`${ORCH}/dashboard#main`);

    // Register the agent's key with a proof the agent signed.
    const key = await newAgentKey();
    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Agents' }).click();
    await page.getByLabel('Name').fill('browser agent');
    await page.getByLabel('Public key (JWK)').fill(JSON.stringify(key.jwk));
    await page.getByLabel('Proof of possession (DPoP proof)').fill(await dpopProof(key, 'POST', `${ORCH}/v1/agents`));
    await page.getByRole('button', { name: 'Register the agent' }).click();
    await expect.poll(() => page.getByRole('status').first().textContent()).toContain('The agent is registered');
    expect(await page.getByRole('row', { name: /browser agent/ }).textContent()).toContain('active');
    await look(page, '03-agents');

    // The agent asks for $50.00 a month; the human approves $20.00.
    const requested = await asAgent(key, ORCH, 'POST', '/v1/mandates', {
      description: 'Register a domain for the launch',
      scope: [{ provider: 'cloud', services: ['domain'] }],
      spend_limit: { amount: 5000, currency: 'usd', period: 'month' },
      expires_at: inDays(30),
    });
    const mandate = await readJson(requested);
    expect(requested.status, JSON.stringify(mandate)).toBe(201);
    await page.goto(`${ORCH}/dashboard/mandates`);
    expect(await page.getByRole('row', { name: /Register a domain for the launch/ }).textContent()).toContain('up to $50.00 a month');
    await look(page, '04-mandates-pending');
    await page.getByRole('link', { name: 'Review and decide' }).click();
    expect(page.url()).toBe(`${ORCH}/mandates/${mandate.mandate_id}/approval`);
    await look(page, '05-approval');
    await page.getByLabel(/Monthly limit in dollars/).fill('20.00');
    await page.getByRole('button', { name: 'Approve' }).click();
    expect(await page.locator('main').textContent()).toContain('You approved up to $20.00 a month');

    // The agent registers a domain at cloud for $10.44.
    const token = await providerAccessToken(ORCH, urls.cloud, 'cloud', key, mandate.mandate_id);
    const name = `dash-${crypto.randomUUID().slice(0, 10)}.com`;
    const provisioned = await signedPaidCall(urls.cloud, key, token, 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name }, expected_price: { amount: 1044, currency: 'usd' } }, 'dash-1');
    const resource = await readJson(provisioned);
    expect(provisioned.status, JSON.stringify(resource)).toBe(201);

    // The spend moved: against the monthly limit, the lowered mandate limit, by provider and by agent.
    await page.goto(`${ORCH}/dashboard`);
    const limits = page.getByRole('list', { name: 'Spend against each limit' });
    expect(await limits.getByRole('listitem').filter({ hasText: 'Your monthly limit' }).textContent()).toContain('$10.44 of $100.00 (10 %)');
    expect(await limits.getByRole('listitem').filter({ hasText: 'Register a domain for the launch' }).textContent()).toMatch(/\$10\.44 of \$20\.00 \(52 %\)\s*over 50 %/);
    expect(await page.getByRole('list', { name: 'Spend by provider' }).textContent()).toMatch(/OAP Cloud.*\$10\.44 of your \$100\.00 monthly limit/s);
    expect(await page.getByRole('list', { name: 'Spend by agent' }).textContent()).toMatch(/browser agent.*\$10\.44/s);
    await look(page, '06-overview-spent');

    await page.getByRole('navigation', { name: 'Pages' }).getByRole('link', { name: 'Notifications' }).click();
    expect(await page.locator('main').textContent()).toMatch(/50 % of a limit spent:\s*\$10\.44 of the limit of mandate “Register a domain for the launch” \(\$20\.00 a month\)/);
    await look(page, '07-notifications');

    // Limits: raise below the ceiling, then through the fresh sign-in step above it.
    await page.goto(`${ORCH}/dashboard/limits`);
    await page.getByLabel(/Monthly limit in dollars/).fill('250');
    await page.getByRole('button', { name: 'Set the monthly limit' }).click();
    expect(await page.getByRole('status').first().textContent()).toContain('Your monthly limit is set.');
    await look(page, '08-limits');
    await page.goto(`${ORCH}/dashboard/limits?step=reauthenticate&amount=600.00`);
    await look(page, '09-limits-reauthenticate');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in again' }).click();
    expect(page.url()).toBe(`${ORCH}/dashboard/limits?amount=600.00`);
    expect(await page.getByLabel(/Monthly limit in dollars/).inputValue()).toBe('600.00');
    await page.getByRole('button', { name: 'Set the monthly limit' }).click();
    expect(await page.getByRole('row', { name: /Your monthly limit/ }).textContent()).toContain('$600.00');

    // Audit: the agent's charge, filtered with the form.
    await page.goto(`${ORCH}/dashboard/audit`);
    await page.getByLabel('Agent').selectOption({ label: 'browser agent' });
    await page.getByLabel('Action').fill('charge.authorize');
    await page.getByRole('button', { name: 'Filter' }).click();
    expect(page.url()).toContain(`agent=${mandate.agent_id}`);
    expect(await page.getByRole('row', { name: /charge\.authorize/ }).count()).toBe(1);
    expect(await page.getByRole('row', { name: /charge\.authorize/ }).textContent()).toContain(resource.charge_id);
    await look(page, '10-audit');

    // Disputes: once the provider's capture lands, dispute the charge and read the verdict.
    const reason = page.getByLabel('Why do you dispute it?');
    for (let i = 0; i < 40; i++) {
      await page.goto(`${ORCH}/dashboard/disputes`);
      if ((await reason.count()) === 1) break;
      await sleep(250);
    }
    await look(page, '11-disputes');
    await reason.fill('I only wanted to see it on the dashboard');
    await page.getByRole('button', { name: 'Dispute this charge' }).click();
    expect(page.url()).toMatch(new RegExp(`^${ORCH}/dashboard/disputes/dsp_`));
    expect(await page.getByRole('status').first().textContent()).toContain('The agent acted within the scope you authorized. The charge stands.');
    expect(await page.getByRole('link', { name: 'Download the evidence bundle' }).getAttribute('href')).toMatch(/^\/v1\/disputes\/dsp_\w+\/evidence$/);
    expect(await page.getByRole('row', { name: /The mandate was active when the charge was made/ }).textContent()).toContain('yes');
    await look(page, '12-dispute-verdict');

    // Extend the mandate for 90 days: a request for the same terms, approved on the same page, then in force.
    await page.goto(`${ORCH}/dashboard/mandates`);
    await page.getByLabel('Extend the mandate “Register a domain for the launch” until').selectOption({ label: '90 days from now' });
    await page.getByRole('button', { name: 'Extend the mandate “Register a domain for the launch”' }).click();
    expect(page.url()).toMatch(new RegExp(`^${ORCH}/mandates/mdt_\\w+/approval$`));
    const extensionId = new URL(page.url()).pathname.split('/')[2]!;
    expect(await page.locator('main').textContent()).toContain(mandate.mandate_id);
    await look(page, '13-extension-approval');
    await page.getByRole('button', { name: 'Approve' }).click();
    expect(await page.locator('main').textContent()).toContain('You approved up to $20.00 a month');
    await page.goto(`${ORCH}/dashboard/mandates`);
    expect(await page.getByRole('row', { name: /Register a domain for the launch.*superseded/ }).count()).toBe(1);
    expect(await page.getByRole('button', { name: 'Extend the mandate “Register a domain for the launch”' }).count()).toBe(1);
    await look(page, '14-mandates-extended');

    // A second domain does not fit the $20.00 (spend is summed over the chain): the decline's step_up_url leads the
    // human to the mandate, where Raise asks for it with $40.00, approved on the next page; then the domain fits.
    const extended = await providerAccessToken(ORCH, urls.cloud, 'cloud', key, extensionId);
    const second = { service: 'domain', plan: 'com-1y', parameters: { name: `second-${name}` }, expected_price: { amount: 1044, currency: 'usd' } };
    const declined = await signedPaidCall(urls.cloud, key, extended, 'POST', '/v1/resources', second, 'dash-raise-1');
    const decline = await readJson(declined);
    expect(declined.status, JSON.stringify(decline)).toBe(402);
    expect(decline.step_up_url).toBe(`${ORCH}/mandates/${extensionId}/approval`);
    await page.goto(decline.step_up_url);
    await page.getByLabel(/Monthly limit in dollars \(now \$20\.00\)/).fill('40');
    await page.getByRole('button', { name: 'Raise' }).click();
    expect(page.url()).toMatch(new RegExp(`^${ORCH}/mandates/mdt_\\w+/approval$`));
    const raisedId = new URL(page.url()).pathname.split('/')[2]!;
    expect(await page.locator('main').textContent()).toContain('$40.00 a month');
    await look(page, '14b-raise-approval');
    await page.getByRole('button', { name: 'Approve' }).click();
    expect(await page.locator('main').textContent()).toContain('You approved up to $40.00 a month');
    const raised = await providerAccessToken(ORCH, urls.cloud, 'cloud', key, raisedId);
    const fits = await signedPaidCall(urls.cloud, key, raised, 'POST', '/v1/resources', second, 'dash-raise-2');
    expect(fits.status, JSON.stringify(await readJson(fits.clone()))).toBe(201);

    // Revoke the agent: its next call is refused.
    await page.goto(`${ORCH}/dashboard/agents`);
    await page.getByRole('button', { name: 'Revoke browser agent' }).click();
    expect(await page.getByRole('status').first().textContent()).toContain('The agent is revoked');
    expect(await page.getByRole('row', { name: /browser agent/ }).textContent()).toContain('revoked');
    await look(page, '15-agents-revoked');
    await expectProblem(await asAgent(key, ORCH, 'POST', '/v1/attestations', { mandate_id: mandate.mandate_id, provider: 'cloud' }), 401, 'agent_revoked');
    const afterRevoke = await signedPaidCall(urls.cloud, key, token, 'POST', '/v1/resources', { service: 'domain', plan: 'com-1y', parameters: { name: `x${name}` } }, 'dash-2');
    expect(afterRevoke.status).not.toBe(201);
    expect(['mandate_inactive', 'invalid_token', 'agent_revoked']).toContain((await readJson(afterRevoke)).code);

    // The same pages on a phone: one column, nothing wider than the screen.
    const phone = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 375, height: 740 }, storageState: await context.storageState() });
    const small = await phone.newPage();
    for (const [path, shot] of [
      ['/dashboard', 'overview'],
      ['/dashboard/agents', 'agents'],
      ['/dashboard/mandates', 'mandates'],
      ['/dashboard/limits', 'limits'],
      ['/dashboard/charges', 'charges'],
      [`/dashboard/audit?agent=${mandate.agent_id}`, 'audit'],
      ['/dashboard/disputes', 'disputes'],
      ['/dashboard/notifications', 'notifications'],
    ] as const) {
      await small.goto(`${ORCH}${path}`);
      expect(await small.evaluate('document.documentElement.scrollWidth'), path).toBeLessThanOrEqual(375);
      await look(small, `phone-${shot}`);
    }
    await phone.close();
    await context.close();
  });
});
