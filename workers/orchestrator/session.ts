// The principal's session at the orchestrator, as route middleware.
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { readSession, requireSession, type Session } from '../lib/sessions';
import { sessionConfigOf, type OrchestratorBindings } from './env';

type C = Context<{ Bindings: OrchestratorBindings }>;

/** A signed-in principal, with CSRF checked on state changes; agents' credentials never satisfy it. */
export const principalSession = requireSession(
  (c) => (c as C).env.DB,
  (c) => sessionConfigOf((c as C).env),
);

/** For pages: the session, or a redirect to the sign-in page that comes back here. */
export const pageSession = createMiddleware<{ Bindings: OrchestratorBindings; Variables: { session: Session } }>(async (c, next) => {
  const session = await readSession(c, c.env.DB, sessionConfigOf(c.env));
  if (!session) return c.redirect(`/sign-in?next=${encodeURIComponent(c.req.path)}`, 303);
  c.set('session', session);
  await next();
});
