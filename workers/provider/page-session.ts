// The provider account's human on the provider's own pages (linking, limits).
import { createMiddleware } from 'hono/factory';
import { checkCsrf, readSession, type Session } from '../lib/sessions';
import { sessionConfigOf, type ProviderBindings } from './env';

/** The session, or a redirect to sign in and come back here; a form post also proves its CSRF token. */
export const pageSession = createMiddleware<{ Bindings: ProviderBindings; Variables: { session: Session } }>(async (c, next) => {
  const session = await readSession(c, c.env.DB, sessionConfigOf(c.env));
  if (!session) return c.redirect(`/sign-in?next=${encodeURIComponent(c.req.path)}`, 303);
  if (c.req.method === 'POST') await checkCsrf(c, session, sessionConfigOf(c.env).baseUrl);
  c.set('session', session);
  await next();
});
