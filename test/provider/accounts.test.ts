// A provider's own humans sign up, confirm their email and sign in, as at the orchestrator (§2.0).
import { env, exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';

const BASE = 'http://127.0.0.1:8788';
const call = (path: string, init?: RequestInit) => exports.default.fetch(new Request(`${BASE}${path}`, init));
const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
const db = () => (env as unknown as TestEnv).DB;

describe('provider accounts', () => {
  it('sign up, confirm by the mailed link, then sign in with a provider-named cookie', async () => {
    const email = `owner${Date.now()}@example.test`;
    const created = await call('/v1/accounts', json({ email, password: 'a long enough password' }));
    expect(created.status).toBe(201);
    const { account_id } = (await created.json()) as { account_id: string };
    expect(account_id).toMatch(/^acct_/);
    const mail = await db().prepare('SELECT subject, body FROM mail_outbox WHERE to_address = ?1').bind(email).first<{ subject: string; body: string }>();
    expect(mail!.subject).toContain('OAP Cloud');
    const token = /\/verify-email\?token=([\w-]+)/.exec(mail!.body)![1]!;
    expect((await call('/v1/email-verifications', json({ token }))).status).toBe(200);
    expect((await db().prepare('SELECT email_verified FROM accounts WHERE id = ?1').bind(account_id).first<{ email_verified: number }>())!.email_verified).toBe(1);

    const session = await call('/session', json({ email, password: 'a long enough password' }));
    expect(session.status).toBe(200);
    expect(session.headers.get('set-cookie')).toMatch(/^oap_cloud_session=/);
    expect(await session.json()).toMatchObject({ account_id });
  });

  it('refuses a second human account with the same email, creating nothing', async () => {
    const email = `twice${Date.now()}@example.test`;
    expect((await call('/v1/accounts', json({ email, password: 'a long enough password' }))).status).toBe(201);
    expect((await call('/v1/accounts', json({ email, password: 'another long password' }))).status).toBe(409);
    const { n } = (await db().prepare('SELECT COUNT(*) AS n FROM accounts WHERE email = ?1').bind(email).first<{ n: number }>())!;
    expect(n).toBe(1);
  });

  it('has no mail outbox page outside local development', async () => {
    expect((await call('/dev/mail')).status).toBe(404);
  });
});
