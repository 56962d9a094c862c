// Sign-up, email confirmation and the local mail outbox (PROTOCOL.md §2.0),
// the same for principals at the orchestrator and for a provider's own humans.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { acceptBody } from '../app';
import { listMail } from '../mail-outbox';
import { Layout, PAGE_SECURITY_HEADERS } from '../pages/layout';
import { ProblemError, problemResponses } from '../problem';
import { isFormRequest } from '../sessions';

export type SignUpDirectory = {
  /** `/v1/principals` at the orchestrator, `/v1/accounts` at a provider. */
  path: string;
  subjectField: 'principal_id' | 'account_id';
  schemaName: string;
  roleName: (env: any) => string;
  /** Local development only: the mail outbox page. */
  devMail: (env: any) => boolean;
  db: (env: any) => D1Database;
  signUp: (env: any, email: string, password: string) => Promise<{ id: string; email: string }>;
  confirmEmail: (env: any, token: string) => Promise<string>;
};

const SignUpSchema = z
  .object({
    email: z.string().trim().toLowerCase().email().max(254),
    password: z.string().min(10, 'at least 10 characters').max(1024),
  })
  .openapi('SignUp');

const EmailVerificationSchema = z.object({ token: z.string().min(10).max(200) }).openapi('EmailVerification');

export function signUpRoutes(directory: SignUpDirectory) {
  const app = new OpenAPIHono<{ Bindings: any }>();
  const HumanSchema = z
    .object({ [directory.subjectField]: z.string(), email: z.string(), email_verified: z.boolean() })
    .openapi(directory.schemaName);
  const VerifiedSchema = z.object({ [directory.subjectField]: z.string(), email_verified: z.literal(true) });

  app.openapi(
    createRoute({
      method: 'post',
      path: directory.path,
      summary: 'Sign up; a confirmation link is mailed to the address',
      middleware: [acceptBody('json')] as const,
      request: { body: { required: true, content: { 'application/json': { schema: SignUpSchema } } } },
      responses: {
        201: { description: 'Created, email not yet confirmed', content: { 'application/json': { schema: HumanSchema } } },
        ...problemResponses(400, 409, 415, 422),
      },
    }),
    async (c) => {
      const { email, password } = c.req.valid('json');
      const human = await directory.signUp(c.env, email, password);
      return c.json({ [directory.subjectField]: human.id, email: human.email, email_verified: false }, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/email-verifications',
      summary: 'Confirm an email address with the token from the mailed link',
      middleware: [acceptBody('json', 'form')] as const,
      request: {
        body: {
          required: false,
          content: { 'application/json': { schema: EmailVerificationSchema }, 'application/x-www-form-urlencoded': { schema: EmailVerificationSchema } },
        },
      },
      responses: {
        200: { description: 'Confirmed', content: { 'application/json': { schema: VerifiedSchema } } },
        303: { description: 'Form post: back to the confirmation page' },
        ...problemResponses(404, 415, 422),
      },
    }),
    async (c) => {
      const form = isFormRequest(c);
      const body = form ? await c.req.parseBody() : await c.req.json();
      const parsed = EmailVerificationSchema.safeParse(body);
      if (!parsed.success) throw new ProblemError(422, 'invalid_request', 'token is required.', { errors: [{ path: '/token', message: 'required' }] });
      if (form) {
        const ok = await directory.confirmEmail(c.env, parsed.data.token).then(
          () => true,
          () => false,
        );
        return c.redirect(`/verify-email?done=${ok ? 'ok' : 'failed'}`, 303);
      }
      const id = await directory.confirmEmail(c.env, parsed.data.token);
      return c.json({ [directory.subjectField]: id, email_verified: true }, 200);
    },
  );

  // The link in the mail opens a page with a button, so that mail scanners fetching links confirm nothing.
  app.get('/verify-email', (c) => {
    const done = c.req.query('done');
    const token = c.req.query('token') ?? '';
    return c.html(
      <Layout title="Confirm your email" roleName={directory.roleName(c.env)}>
        <div class="card">
          <h1>Confirm your email</h1>
          {done === 'ok' ? (
            <p class="ok" role="status">
              Your email address is confirmed. <a href="/sign-in">Sign in</a>.
            </p>
          ) : done === 'failed' ? (
            <p class="error" role="alert">
              This link is unknown, already used or expired.
            </p>
          ) : (
            <form method="post" action="/v1/email-verifications">
              <input type="hidden" name="token" value={token} />
              <p>Confirm that this address is yours.</p>
              <div class="actions">
                <button type="submit">Confirm my email</button>
              </div>
            </form>
          )}
        </div>
      </Layout>,
      200,
      PAGE_SECURITY_HEADERS,
    );
  });

  // Local development delivers mail here instead of sending it (README, "Mail in local development").
  app.get('/dev/mail', async (c) => {
    if (!directory.devMail(c.env)) throw new ProblemError(404, 'not_found', `No resource at ${c.req.path}.`);
    const mail = await listMail(directory.db(c.env));
    if (!(c.req.header('accept') ?? '').includes('text/html')) return c.json({ data: mail, has_more: false });
    return c.html(
      <Layout title="Mail outbox" roleName={directory.roleName(c.env)}>
        <div class="card">
          <h1>Mail outbox (local development)</h1>
          {mail.length === 0 ? <p class="muted">No mail yet.</p> : null}
          {mail.map((m) => (
            <article>
              <h2>{m.subject}</h2>
              <p class="muted">
                To {m.to_address} · {m.created_at}
              </p>
              <pre class="mono">{m.body}</pre>
            </article>
          ))}
        </div>
      </Layout>,
      200,
      PAGE_SECURITY_HEADERS,
    );
  });

  return app;
}
