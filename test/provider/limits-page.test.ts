// The account's monthly limit page (PROTOCOL.md §3.2): where a provider's 402
// step_up_url sends the human. Set by the signed-in human with CSRF; above the
// ceiling only after a fresh sign-in; nothing changes on a refusal.
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { LIMIT_CEILING } from '../../workers/lib/routes/limits';
import { call } from '../support/fake-orchestrator';
import { newHuman, type ProviderHuman } from '../support/provider-humans';

const testEnv = env as unknown as TestEnv & { PASSWORD_PEPPER: string };
type Human = ProviderHuman;

const submit = (human: Human, fields: Record<string, string>) =>
  call('/limits', { method: 'POST', redirect: 'manual', headers: { cookie: human.cookie, 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(fields).toString() });

async function ownLimit(human: Human): Promise<number> {
  const res = await call('/v1/limits', { headers: { cookie: human.cookie } });
  const rows = ((await res.json()) as { data: { scope: string; limit: { amount: number } }[] }).data;
  return rows.find((row) => row.scope === 'principal')!.limit.amount;
}

describe('the monthly limit page at a provider', () => {
  it('shows the account’s limit and spend, and sets a new limit from the form', async () => {
    const human = await newHuman();
    const page = await call('/limits', { headers: { cookie: human.cookie } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('$0.00</strong> of <strong>$100.00');
    expect(html).toContain(`name="csrf_token" value="${human.csrf}"`);

    const set = await submit(human, { csrf_token: human.csrf, amount: '250.50' });
    expect(set.status).toBe(303);
    expect(set.headers.get('location')).toBe('/limits?done=1');
    expect(await ownLimit(human)).toBe(25_050);
    expect(await (await call('/limits?done=1', { headers: { cookie: human.cookie } })).text()).toContain('The limit is set.');
  });

  it('changes nothing without the CSRF token, for an amount that is not one, or signed out', async () => {
    const human = await newHuman();
    expect((await submit(human, { amount: '250' })).status).toBe(403);
    const wrong = await submit(human, { csrf_token: human.csrf, amount: 'lots' });
    expect(wrong.status).toBe(422);
    expect(await wrong.text()).toContain('Enter the limit in dollars');
    const signedOut = await call('/limits', { method: 'POST', redirect: 'manual', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'amount=250' });
    expect(signedOut.status).toBe(303);
    expect(signedOut.headers.get('location')).toBe('/sign-in?next=%2Flimits');
    expect(await ownLimit(human)).toBe(10_000);
  });

  it('asks for a fresh sign-in before raising the limit above the ceiling, and comes back to the amount', async () => {
    const human = await newHuman();
    await testEnv.DB.prepare('UPDATE sessions SET auth_time = auth_time - 600 WHERE subject_id = ?1').bind(human.account_id).run();
    const above = ((LIMIT_CEILING + 100) / 100).toFixed(2);
    const res = await submit(human, { csrf_token: human.csrf, amount: above });
    expect(res.status).toBe(303);
    expect(res.headers.get('location')).toBe(`/sign-in?next=${encodeURIComponent(`/limits?amount=${above}`)}`);
    expect(await ownLimit(human)).toBe(10_000);
    // Below the ceiling an older sign-in is enough.
    expect((await submit(human, { csrf_token: human.csrf, amount: '300' })).status).toBe(303);
    expect(await ownLimit(human)).toBe(30_000);
  });
});
