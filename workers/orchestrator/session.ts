// The principal's session at the orchestrator, as route middleware.
import type { Context } from 'hono';
import { requirePageSession, requireSession } from '../lib/sessions';
import { sessionConfigOf, type OrchestratorBindings } from './env';

type C = Context<{ Bindings: OrchestratorBindings }>;
const db = (c: Context) => (c as C).env.DB;
const config = (c: Context) => sessionConfigOf((c as C).env);

/** A signed-in principal, with CSRF checked on state changes; agents' credentials never satisfy it. */
export const principalSession = requireSession(db, config);

/** For pages: the session, or a redirect to the sign-in page that comes back here (CSRF checked on posts). */
export const pageSession = requirePageSession(db, config);

/** Form posts on the dashboard: as pages, but sign-in comes back to the form's page. */
export const formSession = requirePageSession(db, config, (c) => c.req.path.split('/').slice(0, 3).join('/'));
