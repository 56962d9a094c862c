// Principals and their sessions (PROTOCOL.md §2.0).
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { auditEvents } from '../../workers/lib/audit-trail';
import type { AuditEvent } from '../../workers/lib/audit';
import { call, newPrincipal } from '../support/orchestrator-client';

const db = (env as unknown as TestEnv).DB;
const json = (body: unknown) => ({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

async function trail(principal: string) {
  const ledger = (env as unknown as TestEnv).LEDGER.get((env as unknown as TestEnv).LEDGER.idFromName(principal));
  const out: AuditEvent[] = [];
  for await (const e of auditEvents(ledger, db, principal, 0)) out.push(e);
  return out;
}

describe('sign-up and email confirmation', () => {
  it('creates an unverified principal and mails a one-time confirmation link', async () => {
    const email = `new${Date.now()}@example.test`;
    const res = await call('/v1/principals', json({ email, password: 'a long enough password' }));
    expect(res.status).toBe(201);
    const body = (await res.json()) as { principal_id: string; email_verified: boolean };
    expect(body).toMatchObject({ email, email_verified: false });
    const mail = await db.prepare('SELECT body FROM mail_outbox WHERE to_address = ?1').bind(email).first<{ body: string }>();
    const token = /verify-email\?token=([\w-]+)/.exec(mail!.body)![1]!;
    expect((await call('/v1/email-verifications', json({ token }))).status).toBe(200);
    const row = await db.prepare('SELECT email_verified FROM principals WHERE id = ?1').bind(body.principal_id).first<{ email_verified: number }>();
    expect(row!.email_verified).toBe(1);
    // The link works once.
    expect((await call('/v1/email-verifications', json({ token }))).status).toBe(404);
    expect((await trail(body.principal_id)).map((e) => e.action)).toEqual(['principal.create', 'principal.confirm_email']);
  });

  it('refuses a second account for the same email (any case) and short passwords, creating nothing', async () => {
    const human = await newPrincipal();
    const dup = await call('/v1/principals', json({ email: human.email.toUpperCase(), password: 'another long password' }));
    expect(dup.status).toBe(409);
    const short = await call('/v1/principals', json({ email: `x${Date.now()}@example.test`, password: 'short' }));
    expect(short.status).toBe(422);
    expect(((await short.json()) as { errors: { path: string }[] }).errors[0]!.path).toBe('/password');
  });

  it('stores the password only as a peppered PBKDF2-SHA256 hash at 100,000 iterations', async () => {
    const human = await newPrincipal();
    const row = await db.prepare('SELECT password_hash FROM principals WHERE id = ?1').bind(human.principal_id).first<{ password_hash: string }>();
    expect(row!.password_hash).toMatch(/^pbkdf2-sha256\$100000\$[\w-]{22}\$[\w-]{43}$/);
    expect(row!.password_hash).not.toContain(human.password);
  });
});

describe('sessions', () => {
  it('signs in with a role-named HttpOnly cookie and a CSRF token, and reads the session back', async () => {
    const human = await newPrincipal();
    const res = await call('/session', json({ email: human.email, password: human.password }));
    expect(res.status).toBe(200);
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(/^oap_orchestrator_session=/);
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);
    expect(cookie).toMatch(/Path=\//);
    // Loopback over plain http: Secure would make the browser drop it.
    expect(cookie).not.toMatch(/Secure/i);
    const body = (await res.json()) as { principal_id: string; csrf_token: string; auth_time: number };
    expect(body.principal_id).toBe(human.principal_id);
    expect(Math.abs(body.auth_time - Date.now() / 1000)).toBeLessThan(10);
    const read = await call('/session', { headers: { cookie: cookie.split(';')[0]! } });
    expect(await read.json()).toMatchObject({ principal_id: human.principal_id, csrf_token: body.csrf_token });
  });

  it('answers a wrong password and an unknown email alike with 401 unauthorized', async () => {
    const human = await newPrincipal();
    const wrong = await call('/session', json({ email: human.email, password: 'not the password' }));
    const unknown = await call('/session', json({ email: `nobody${Date.now()}@example.test`, password: 'whatever password' }));
    for (const res of [wrong, unknown]) {
      expect(res.status).toBe(401);
      expect(await res.json()).toMatchObject({ code: 'unauthorized' });
      expect(res.headers.get('set-cookie')).toBeNull();
    }
    expect((await trail(human.principal_id)).filter((e) => e.action === 'session.create' && e.outcome === 'refused')).toHaveLength(1);
  });

  it('rate-limits repeated failures (429 rate_limited with Retry-After), even for the right password', async () => {
    const human = await newPrincipal();
    for (let i = 0; i < 5; i++) expect((await call('/session', json({ email: human.email, password: `wrong ${i}` }))).status).toBe(401);
    const blocked = await call('/session', json({ email: human.email, password: human.password }));
    expect(blocked.status).toBe(429);
    expect(await blocked.json()).toMatchObject({ code: 'rate_limited' });
    expect(Number(blocked.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('signs out only with the CSRF token, and the cookie stops working', async () => {
    const human = await newPrincipal();
    const forged = await call('/session', { method: 'DELETE', headers: { cookie: human.cookie } });
    expect(forged.status).toBe(403);
    expect(await forged.json()).toMatchObject({ code: 'csrf_failed' });
    expect((await call('/session', { headers: { cookie: human.cookie } })).status).toBe(200);
    expect((await call('/session', { method: 'DELETE', headers: human.headers() })).status).toBe(204);
    expect((await call('/session', { headers: { cookie: human.cookie } })).status).toBe(401);
  });

  it('refuses a state change from another origin even with the right CSRF token', async () => {
    const human = await newPrincipal();
    const res = await call('/session', { method: 'DELETE', headers: human.headers({ origin: 'https://evil.example' }) });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ code: 'csrf_failed' });
  });

  it('serves a sign-in page that cannot be framed and posts back with a same-origin next', async () => {
    const page = await call('/sign-in?next=/mandates/mdt_x/approval');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    const html = await page.text();
    expect(html).toContain('<label for="email">Email</label>');
    expect(html).toContain('value="/mandates/mdt_x/approval"');
    const human = await newPrincipal();
    const form = new URLSearchParams({ email: human.email, password: human.password, next: 'https://evil.example/' });
    const posted = await call('/session', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form.toString(), redirect: 'manual' });
    expect(posted.status).toBe(303);
    expect(posted.headers.get('location')).toBe('/');
  });
});
