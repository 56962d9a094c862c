// The linking page and its decisions (PROTOCOL.md §2.3). The page is for the
// provider account's human; the decisions also answer JSON API clients.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { RoleEnv } from '../../lib/app';
import { Layout, PAGE_SECURITY_HEADERS } from '../../lib/pages/layout';
import { ProblemError, problemResponses } from '../../lib/problem';
import { isFormRequest, type SessionVariables } from '../../lib/sessions';
import { providerConfig, type ProviderBindings } from '../env';
import { confirmLink, declineLink, linkRequestFor } from '../linking';
import { humanSession, pageSession } from '../page-session';
import { accountById } from '../store/accounts';

type Env = RoleEnv<ProviderBindings> & { Variables: SessionVariables };
const LinkId = z.object({ id: z.string().startsWith('lnk_') });
const LinkSchema = z.object({ link_id: z.string(), status: z.enum(['pending', 'linked', 'declined', 'expired']), orchestrator: z.string(), account_id: z.string() }).openapi('AccountLink');

export function linkingRoutes() {
  const app = new OpenAPIHono<Env>();

  for (const action of ['confirm', 'decline'] as const) {
    app.openapi(
      createRoute({
        method: 'post',
        path: `/v1/links/{id}/${action}`,
        summary: action === 'confirm' ? 'Link this account to the orchestrator’s principal (account session + CSRF)' : 'Decline the link',
        middleware: [humanSession] as const,
        request: { params: LinkId },
        responses: {
          200: { description: 'The link request', content: { 'application/json': { schema: LinkSchema } } },
          303: { description: 'Form post: back to the page' },
          ...problemResponses(401, 403, 404, 409),
        },
      }),
      async (c) => {
        const { id } = c.req.valid('param');
        const accountId = c.get('session').subject_id;
        const view = action === 'confirm' ? await confirmLink(c.env, accountId, id) : await declineLink(c.env, accountId, id);
        if (isFormRequest(c)) return c.redirect(`/link/${id}`, 303) as never;
        return c.json({ link_id: id, status: view.status, orchestrator: view.request.iss, account_id: accountId }, 200);
      },
    );
  }

  app.get('/link/:id', pageSession, async (c) => {
    const session = c.get('session');
    const config = providerConfig(c.env);
    const account = await accountById(c.env.DB, session.subject_id);
    const signedIn = { label: account?.email ?? session.subject_id, csrfToken: session.csrf_token };
    let view;
    try {
      view = await linkRequestFor(c.env, session.subject_id, c.req.param('id'));
    } catch (error) {
      if (!(error instanceof ProblemError)) throw error;
      return c.html(
        <Layout title="Link request" roleName={config.PROVIDER_NAME} signedIn={signedIn}>
          <div class="card">
            <h1>No such link request</h1>
            <p>There is no request to link this account at this address. Are you signed in to the right account?</p>
          </div>
        </Layout>,
        404,
        PAGE_SECURITY_HEADERS,
      );
    }
    const { request, status } = view;
    return c.html(
      <Layout title="Link your account" roleName={config.PROVIDER_NAME} signedIn={signedIn}>
        <div class="card">
          <h1>Link your {config.PROVIDER_NAME} account?</h1>
          <p>
            <strong>{request.iss}</strong> asks to attach its customer <strong>{request.email}</strong> to your account <span class="mono">{request.account_id}</span>, so that an agent acting for
            that customer can use this account and its limits.
          </p>
          <dl>
            <dt>Orchestrator</dt>
            <dd class="mono">{request.iss}</dd>
            <dt>Agent</dt>
            <dd class="mono">{request.agent_id}</dd>
            <dt>Mandate</dt>
            <dd class="mono">{request.mandate_id}</dd>
            <dt>Status</dt>
            <dd>
              <span class="badge">{status}</span>
            </dd>
          </dl>
          {status === 'pending' ? (
            <div class="actions">
              <form method="post" action={`/v1/links/${request.id}/confirm`}>
                <input type="hidden" name="csrf_token" value={session.csrf_token} />
                <button type="submit">Link my account</button>
              </form>
              <form method="post" action={`/v1/links/${request.id}/decline`}>
                <input type="hidden" name="csrf_token" value={session.csrf_token} />
                <button type="submit" class="secondary">Decline</button>
              </form>
            </div>
          ) : null}
        </div>
      </Layout>,
      200,
      PAGE_SECURITY_HEADERS,
    );
  });

  return app;
}
