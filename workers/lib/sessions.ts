// Human sessions (PROTOCOL.md §2.0), the same at the orchestrator (principals)
// and at each provider (its own human accounts): an opaque cookie named after
// the role, stored only as a hash, a CSRF token per session checked with the
// Origin on every state change, and rate-limited sign-in failures.
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { createMiddleware } from 'hono/factory';
import { sha256Hex } from './audit';
import { randomToken } from './jws';
import { timingSafeEqualText } from './passwords';
import { ProblemError } from './problem';

export const SESSION_TTL_S = 12 * 60 * 60;
/** §2.0: actions that widen spend need a sign-in this recent. */
export const REAUTH_WINDOW_S = 5 * 60;
const FAILURE_WINDOW_S = 15 * 60;
/** Per email a handful of guesses; per client address more, since many people may share one. */
const MAX_FAILURES = { email: 5, ip: 50 } as const;
const limitOf = (subject: string) => (subject.startsWith('ip:') ? MAX_FAILURES.ip : MAX_FAILURES.email);

export type Session = { subject_id: string; csrf_token: string; auth_time: number; expires_at: number };

export type SessionConfig = { roleId: string; baseUrl: string };

export const sessionCookieName = (roleId: string) => `oap_${roleId}_session`;

/** `Secure` everywhere but plain-http loopback, where browsers would drop the cookie. */
function isLoopbackHttp(baseUrl: string): boolean {
  const url = new URL(baseUrl);
  return url.protocol === 'http:' && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
}

export async function createSession(c: Context, db: D1Database, config: SessionConfig, subjectId: string): Promise<Session & { token: string }> {
  const token = randomToken();
  const now = Math.floor(Date.now() / 1000);
  const session = { subject_id: subjectId, csrf_token: randomToken(), auth_time: now, expires_at: now + SESSION_TTL_S };
  await db
    .prepare('INSERT INTO sessions (token_hash, subject_id, csrf_token, auth_time, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)')
    .bind(sha256Hex(token), subjectId, session.csrf_token, session.auth_time, session.expires_at)
    .run();
  setCookie(c, sessionCookieName(config.roleId), token, {
    httpOnly: true,
    sameSite: 'Lax',
    path: '/',
    secure: !isLoopbackHttp(config.baseUrl),
    maxAge: SESSION_TTL_S,
  });
  return { ...session, token };
}

export async function readSession(c: Context, db: D1Database, config: SessionConfig): Promise<Session | null> {
  const token = getCookie(c, sessionCookieName(config.roleId));
  if (!token) return null;
  const row = await db
    .prepare('SELECT subject_id, csrf_token, auth_time, expires_at FROM sessions WHERE token_hash = ?1')
    .bind(sha256Hex(token))
    .first<Session>();
  if (!row || row.expires_at <= Math.floor(Date.now() / 1000)) return null;
  return row;
}

export async function endSession(c: Context, db: D1Database, config: SessionConfig): Promise<void> {
  const token = getCookie(c, sessionCookieName(config.roleId));
  if (token) await db.prepare('DELETE FROM sessions WHERE token_hash = ?1').bind(sha256Hex(token)).run();
  deleteCookie(c, sessionCookieName(config.roleId), { path: '/' });
}

/**
 * CSRF defence for cookie-authenticated state changes: the session's token in
 * X-CSRF-Token or the form field csrf_token, and an Origin, when sent, equal
 * to the role's own.
 */
export async function checkCsrf(c: Context, session: Session, baseUrl: string): Promise<void> {
  const origin = c.req.header('origin');
  if (origin !== undefined && origin !== new URL(baseUrl).origin) {
    throw new ProblemError(403, 'csrf_failed', 'The request comes from another origin.');
  }
  let token = c.req.header('x-csrf-token');
  if (token === undefined && isFormRequest(c)) {
    const form = await c.req.parseBody();
    token = typeof form.csrf_token === 'string' ? form.csrf_token : undefined;
  }
  if (token === undefined || !timingSafeEqualText(token, session.csrf_token)) {
    throw new ProblemError(403, 'csrf_failed', 'The CSRF token is missing or wrong.');
  }
}

export function isFormRequest(c: Context): boolean {
  const type = (c.req.header('content-type') ?? '').toLowerCase();
  return type.startsWith('application/x-www-form-urlencoded') || type.startsWith('multipart/form-data');
}

export function requireFreshSignIn(session: Session): void {
  if (Math.floor(Date.now() / 1000) - session.auth_time > REAUTH_WINDOW_S) {
    throw new ProblemError(401, 'reauthentication_required', 'Sign in again to confirm this action.');
  }
}

export type SessionVariables = { session: Session };

/**
 * Middleware: a signed-in human, and on state-changing methods a valid CSRF
 * token. Runs before any body validation, so an anonymous caller learns
 * nothing about the body rules.
 */
export function requireSession(db: (c: Context) => D1Database, config: (c: Context) => SessionConfig): MiddlewareHandler<{ Variables: SessionVariables }> {
  return sessionMiddleware(db, config, () => {
    throw new ProblemError(401, 'unauthorized', 'Sign in first.');
  });
}

/**
 * The same for a role's own pages: without a session, a redirect to sign in that comes back to `back` (the
 * page asked for, by default).
 */
export function requirePageSession(
  db: (c: Context) => D1Database,
  config: (c: Context) => SessionConfig,
  back: (c: Context) => string = (c) => c.req.path,
): MiddlewareHandler<{ Variables: SessionVariables }> {
  return sessionMiddleware(db, config, (c) => c.redirect(`/sign-in?next=${encodeURIComponent(back(c))}`, 303));
}

function sessionMiddleware(db: (c: Context) => D1Database, config: (c: Context) => SessionConfig, signedOut: (c: Context) => Response): MiddlewareHandler<{ Variables: SessionVariables }> {
  return createMiddleware<{ Variables: SessionVariables }>(async (c, next) => {
    const session = await readSession(c, db(c), config(c));
    if (!session) return signedOut(c);
    if (!['GET', 'HEAD', 'OPTIONS'].includes(c.req.method)) await checkCsrf(c, session, config(c).baseUrl);
    c.set('session', session);
    await next();
  });
}

/** Counts a failure for each subject (the email, the client address); true when any is over the limit. */
export async function signInBlocked(db: D1Database, subjects: string[]): Promise<number | null> {
  const now = Math.floor(Date.now() / 1000);
  const { results } = await db
    .prepare(`SELECT subject, failures, window_start FROM sign_in_failures WHERE subject IN (${subjects.map((_, i) => `?${i + 1}`).join(', ')})`)
    .bind(...subjects)
    .all<{ subject: string; failures: number; window_start: number }>();
  const blocked = results.filter((r) => r.failures >= limitOf(r.subject) && r.window_start + FAILURE_WINDOW_S > now);
  return blocked.length ? Math.max(...blocked.map((r) => r.window_start + FAILURE_WINDOW_S - now)) : null;
}

export async function recordSignInFailure(db: D1Database, subjects: string[]): Promise<void> {
  const now = Math.floor(Date.now() / 1000);
  const upsert = db.prepare(
    `INSERT INTO sign_in_failures (subject, failures, window_start) VALUES (?1, 1, ?2)
     ON CONFLICT (subject) DO UPDATE SET
       failures = CASE WHEN window_start + ?3 <= ?2 THEN 1 ELSE failures + 1 END,
       window_start = CASE WHEN window_start + ?3 <= ?2 THEN ?2 ELSE window_start END`,
  );
  await db.batch(subjects.map((s) => upsert.bind(s, now, FAILURE_WINDOW_S)));
}

export async function clearSignInFailures(db: D1Database, subject: string): Promise<void> {
  await db.prepare('DELETE FROM sign_in_failures WHERE subject = ?1').bind(subject).run();
}
