// The principal's session at the orchestrator, as route middleware.
import type { Context } from 'hono';
import { requirePageSession, requireSession } from '../lib/sessions';
import { sessionConfigOf, type OrchestratorBindings } from './env';

type C = Context<{ Bindings: OrchestratorBindings }>;

/** A signed-in principal, with CSRF checked on state changes; agents' credentials never satisfy it. */
export const principalSession = requireSession(
  (c) => (c as C).env.DB,
  (c) => sessionConfigOf((c as C).env),
);

/** For pages: the session, or a redirect to the sign-in page that comes back here. */
export const pageSession = requirePageSession(
  (c) => (c as C).env.DB,
  (c) => sessionConfigOf((c as C).env),
);

/** Form posts on the dashboard: as pages, with the CSRF token checked, and sign-in coming back to the form's page. */
export const formSession = requirePageSession(
  (c) => (c as C).env.DB,
  (c) => sessionConfigOf((c as C).env),
  (c) => c.req.path.split('/').slice(0, 3).join('/'),
);
