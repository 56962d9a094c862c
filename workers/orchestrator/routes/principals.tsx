// Sign-up, email confirmation, and the local mail outbox (PROTOCOL.md §2.0).
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { acceptBody, type RoleEnv } from '../../lib/app';
import { Layout, PAGE_SECURITY_HEADERS } from '../../lib/pages/layout';
import { ProblemError, problemResponses } from '../../lib/problem';
import { isFormRequest } from '../../lib/sessions';
import { orchestratorConfig, type OrchestratorBindings } from '../env';
import { confirmEmail, signUp } from '../principals';
import { listMail } from '../store/principals';

const SignUpSchema = z
  .object({
    email: z.string().trim().toLowerCase().email().max(254),
    password: z.string().min(10, 'at least 10 characters').max(1024),
  })
  .openapi('SignUp');

const PrincipalSchema = z.object({ principal_id: z.string(), email: z.string(), email_verified: z.boolean() }).openapi('Principal');
const EmailVerificationSchema = z.object({ token: z.string().min(10).max(200) }).openapi('EmailVerification');

export function principalRoutes() {
  const app = new OpenAPIHono<RoleEnv<OrchestratorBindings>>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/principals',
      summary: 'Sign up; a confirmation link is mailed to the address',
      middleware: [acceptBody('json')] as const,
      request: { body: { required: true, content: { 'application/json': { schema: SignUpSchema } } } },
      responses: {
        201: { description: 'Created, email not yet confirmed', content: { 'application/json': { schema: PrincipalSchema } } },
        ...problemResponses(400, 409, 415, 422),
      },
    }),
    async (c) => {
      const { email, password } = c.req.valid('json');
      return c.json(await signUp(c.env, email, password), 201);
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
        200: { description: 'Confirmed', content: { 'application/json': { schema: z.object({ principal_id: z.string(), email_verified: z.literal(true) }) } } },
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
        const ok = await confirmEmail(c.env, parsed.data.token).then(
          () => true,
          () => false,
        );
        return c.redirect(`/verify-email?done=${ok ? 'ok' : 'failed'}`, 303);
      }
      return c.json(await confirmEmail(c.env, parsed.data.token), 200);
    },
  );

  // The link in the mail opens a page with a button, so that mail scanners fetching links confirm nothing.
  app.get('/verify-email', (c) => {
    const done = c.req.query('done');
    const token = c.req.query('token') ?? '';
    return c.html(
      <Layout title="Confirm your email" roleName={orchestratorConfig(c.env).ORCHESTRATOR_NAME}>
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
    if (!orchestratorConfig(c.env).DEV_SEED) throw new ProblemError(404, 'not_found', `No resource at ${c.req.path}.`);
    const mail = await listMail(c.env.DB);
    if (!(c.req.header('accept') ?? '').includes('text/html')) return c.json({ data: mail, has_more: false });
    return c.html(
      <Layout title="Mail outbox" roleName={orchestratorConfig(c.env).ORCHESTRATOR_NAME}>
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
