// Sign-in for humans (PROTOCOL.md §2.0), the same at every role:
// POST/GET/DELETE /session for API clients, and a sign-in page for browsers.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { acceptBody, validationProblem } from '../app';
import type { AuditEntry } from '../audit';
import { Layout, PAGE_SECURITY_HEADERS } from '../pages/layout';
import { verifyPassword } from '../passwords';
import { ProblemError, problemResponses } from '../problem';
import {
  checkCsrf,
  clearSignInFailures,
  createSession,
  endSession,
  isFormRequest,
  readSession,
  recordSignInFailure,
  signInBlocked,
  type SessionConfig,
} from '../sessions';

export type HumanDirectory = {
  /** `principal_id` at the orchestrator, `account_id` at a provider. */
  subjectField: 'principal_id' | 'account_id';
  roleName: string;
  db: (env: any) => D1Database;
  config: (env: any) => SessionConfig;
  pepper: (env: any) => string;
  byEmail: (env: any, email: string) => Promise<{ id: string; password_hash: string | null } | null>;
  audit: (env: any, subjectId: string, entry: AuditEntry) => Promise<unknown>;
};

const CredentialsSchema = z.object({ email: z.string().trim().toLowerCase().email().max(254), password: z.string().min(1).max(1024) }).openapi('Credentials');

const SessionSchema = z
  .object({
    principal_id: z.string().optional(),
    account_id: z.string().optional(),
    csrf_token: z.string(),
    auth_time: z.number().int().openapi({ description: 'When the human last signed in (NumericDate)' }),
  })
  .openapi('Session');

/** `next` must be a path on this origin: never an open redirect. */
export function safeNext(next: unknown): string {
  return typeof next === 'string' && /^\/(?!\/)[^\s\\]*$/.test(next) ? next : '/';
}

export function sessionRoutes(directory: HumanDirectory) {
  const app = new OpenAPIHono<{ Bindings: any }>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/session',
      summary: 'Sign in (JSON or a form post from the sign-in page)',
      middleware: [acceptBody('json', 'form')] as const,
      request: {
        body: {
          required: false,
          content: { 'application/json': { schema: CredentialsSchema }, 'application/x-www-form-urlencoded': { schema: CredentialsSchema } },
        },
      },
      responses: {
        200: { description: 'Signed in; the session cookie is set', content: { 'application/json': { schema: SessionSchema } } },
        303: { description: 'Form post: signed in (or not), back to the page' },
        ...problemResponses(401, 415, 422, 429),
      },
    }),
    async (c) => {
      const form = isFormRequest(c);
      const raw = form ? await c.req.parseBody() : await c.req.json().catch(() => {
        throw new ProblemError(400, 'invalid_request', 'The body is not valid JSON.');
      });
      const parsed = CredentialsSchema.safeParse(raw);
      const next = safeNext(form ? (raw as Record<string, unknown>).next : undefined);
      if (!parsed.success) {
        if (form) return c.redirect(`/sign-in?error=invalid&next=${encodeURIComponent(next)}`, 303);
        throw validationProblem(parsed.error.issues, () => 'email and password are required.');
      }
      const { email, password } = parsed.data;
      const db = directory.db(c.env);
      const address = c.req.header('cf-connecting-ip');
      const subjects = [`email:${email}`, ...(address ? [`ip:${address}`] : [])];
      const retryAfter = await signInBlocked(db, subjects);
      if (retryAfter !== null) {
        if (form) return c.redirect(`/sign-in?error=rate_limited&next=${encodeURIComponent(next)}`, 303);
        throw new ProblemError(429, 'rate_limited', 'Too many failed sign-ins; try again later.', {}, { 'Retry-After': String(retryAfter) });
      }
      const human = await directory.byEmail(c.env, email);
      // Verified even when nobody has this email, so timing does not tell who has an account.
      const ok = await verifyPassword(password, human?.password_hash ?? null, directory.pepper(c.env));
      if (!human || !ok) {
        await recordSignInFailure(db, subjects);
        if (human) await directory.audit(c.env, human.id, { actor: { type: 'principal', id: human.id }, action: 'session.create', outcome: 'refused', reason: 'unauthorized' });
        if (form) return c.redirect(`/sign-in?error=unauthorized&next=${encodeURIComponent(next)}`, 303);
        throw new ProblemError(401, 'unauthorized', 'Wrong email or password.');
      }
      await clearSignInFailures(db, `email:${email}`);
      const session = await createSession(c, db, directory.config(c.env), human.id);
      await directory.audit(c.env, human.id, { actor: { type: 'principal', id: human.id }, action: 'session.create', outcome: 'succeeded' });
      if (form) return c.redirect(next, 303);
      return c.json({ [directory.subjectField]: human.id, csrf_token: session.csrf_token, auth_time: session.auth_time }, 200, { 'cache-control': 'no-store' });
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/session',
      summary: 'The current session',
      responses: { 200: { description: 'Signed in', content: { 'application/json': { schema: SessionSchema } } }, ...problemResponses(401) },
    }),
    async (c) => {
      const session = await readSession(c, directory.db(c.env), directory.config(c.env));
      if (!session) throw new ProblemError(401, 'unauthorized', 'Not signed in.');
      return c.json({ [directory.subjectField]: session.subject_id, csrf_token: session.csrf_token, auth_time: session.auth_time }, 200, {
        'cache-control': 'no-store',
      });
    },
  );

  app.openapi(
    createRoute({
      method: 'delete',
      path: '/session',
      summary: 'Sign out',
      responses: { 204: { description: 'Signed out' }, ...problemResponses(401, 403) },
    }),
    async (c) => {
      const session = await readSession(c, directory.db(c.env), directory.config(c.env));
      if (!session) throw new ProblemError(401, 'unauthorized', 'Not signed in.');
      await checkCsrf(c, session, directory.config(c.env).baseUrl);
      await endSession(c, directory.db(c.env), directory.config(c.env));
      return c.body(null, 204);
    },
  );

  // Browsers cannot send DELETE from a form: the header's sign-out button posts here.
  app.post('/sign-out', async (c) => {
    const session = await readSession(c, directory.db(c.env), directory.config(c.env));
    if (session) {
      await checkCsrf(c, session, directory.config(c.env).baseUrl);
      await endSession(c, directory.db(c.env), directory.config(c.env));
    }
    return c.redirect('/sign-in', 303);
  });

  app.get('/sign-in', (c) => {
    const error = c.req.query('error');
    const next = safeNext(c.req.query('next'));
    const messages: Record<string, string> = {
      unauthorized: 'Wrong email or password.',
      rate_limited: 'Too many failed attempts. Wait a few minutes and try again.',
      invalid: 'Enter your email and password.',
    };
    return c.html(
      <Layout title="Sign in" roleName={directory.roleName}>
        <div class="card">
          <h1>Sign in</h1>
          {error ? (
            <p class="error" role="alert">
              {messages[error] ?? 'Sign-in failed.'}
            </p>
          ) : null}
          <form method="post" action="/session">
            <input type="hidden" name="next" value={next} />
            <label for="email">Email</label>
            <input id="email" name="email" type="email" autocomplete="username" required />
            <label for="password">Password</label>
            <input id="password" name="password" type="password" autocomplete="current-password" required />
            <div class="actions">
              <button type="submit">Sign in</button>
            </div>
          </form>
        </div>
      </Layout>,
      200,
      PAGE_SECURITY_HEADERS,
    );
  });

  return app;
}
