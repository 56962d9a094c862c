// The provider account's human on the provider's own pages (linking, limits).
import type { Context } from 'hono';
import { requirePageSession } from '../lib/sessions';
import { sessionConfigOf, type ProviderBindings } from './env';

type C = Context<{ Bindings: ProviderBindings }>;

/** The session, or a redirect to sign in and come back here; a form post also proves its CSRF token. */
export const pageSession = requirePageSession(
  (c) => (c as C).env.DB,
  (c) => sessionConfigOf((c as C).env),
);
