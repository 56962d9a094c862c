// The provider account's human: on the provider's own pages (linking, limits), and on the API they post to.
import type { Context } from 'hono';
import { requirePageSession, requireSession } from '../lib/sessions';
import { sessionConfigOf, type ProviderBindings } from './env';

type C = Context<{ Bindings: ProviderBindings }>;

const db = (c: Context) => (c as C).env.DB;
const config = (c: Context) => sessionConfigOf((c as C).env);

/** The session, or a redirect to sign in and come back here; a form post also proves its CSRF token. */
export const pageSession = requirePageSession(db, config);

/** The session, or 401: for the API a page posts to. */
export const humanSession = requireSession(db, config);
