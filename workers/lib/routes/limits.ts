// Limits owned by humans (PROTOCOL.md §3.2), the same at the orchestrator
// (the principal's monthly limit, summed across providers and mandates) and
// at a provider (the account's own monthly limit). Only a human session may
// change one; an agent's credential gets 403 human_required.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { acceptBody } from '../app';
import { centsOf } from '../pages/format';
import { idempotency, sessionCaller, type IdempotencyStore } from '../idempotency';
import { ProblemError, problemResponses } from '../problem';
import { LimitRowSchema, SetLimitSchema } from '../schemas/charges';
import { checkCsrf, readSession, requireFreshSignIn, type Session, type SessionConfig } from '../sessions';

/** Raising a limit above this needs a sign-in within the last 5 minutes. */
export const LIMIT_CEILING = 50_000;
export const MAX_LIMIT = 100_000_000;

type LimitLedger = IdempotencyStore & {
  limitsSummary(): Promise<unknown[]> | unknown[];
  ownLimit(): Promise<{ amount: number; currency: string }> | { amount: number; currency: string };
  setOwnLimit(principal: string, limit: { amount: number; currency: string }): Promise<unknown> | unknown;
};

export type LimitDirectory = {
  db: (env: any) => D1Database;
  config: (env: any) => SessionConfig;
  ledgerOf: (env: any, id: string) => LimitLedger;
};

export function humanOnly(directory: LimitDirectory) {
  return createMiddleware<{ Bindings: any; Variables: { session: Session } }>(async (c, next) => {
    // §3.2: an agent's credential never raises a limit, whatever else the request carries.
    if (c.req.header('dpop') !== undefined || c.req.header('authorization') !== undefined) {
      throw new ProblemError(403, 'human_required', 'Only the human can change a limit, signed in, never through an agent.');
    }
    const session = await readSession(c, directory.db(c.env), directory.config(c.env));
    if (!session) throw new ProblemError(401, 'unauthorized', 'Sign in first.');
    if (c.req.method !== 'GET') await checkCsrf(c, session, directory.config(c.env).baseUrl);
    c.set('session', session);
    await next();
  });
}

export function limitRoutes(directory: LimitDirectory) {
  const app = new OpenAPIHono<{ Bindings: any; Variables: { session: Session } }>();
  const human = humanOnly(directory);
  // Conventions: the human's records, in the ledger whose limit it is.
  const idempotent = idempotency({ caller: sessionCaller(directory.ledgerOf) });

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/limits',
      summary: 'Each limit this period with what is spent against it (pending holds count)',
      middleware: [human] as const,
      responses: {
        200: { description: 'Limits', content: { 'application/json': { schema: z.object({ data: z.array(LimitRowSchema) }) } } },
        ...problemResponses(401, 403),
      },
    }),
    async (c) => c.json({ data: (await directory.ledgerOf(c.env, c.get('session').subject_id).limitsSummary()) as z.infer<typeof LimitRowSchema>[] }, 200),
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/limits',
      summary: 'Set the monthly limit (human session + CSRF; above the ceiling, a fresh sign-in)',
      middleware: [human, acceptBody('json'), idempotent] as const,
      request: { body: { required: true, content: { 'application/json': { schema: SetLimitSchema } } } },
      responses: {
        200: { description: 'The limits after the change', content: { 'application/json': { schema: z.object({ data: z.array(LimitRowSchema) }) } } },
        ...problemResponses(400, 401, 403, 409, 415, 422),
      },
    }),
    async (c) => {
      const session = c.get('session');
      const ledger = directory.ledgerOf(c.env, session.subject_id);
      await setMonthlyLimit(ledger, session, c.req.valid('json'), await ledger.ownLimit());
      return c.json({ data: (await ledger.limitsSummary()) as z.infer<typeof LimitRowSchema>[] }, 200);
    },
  );

  return app;
}

/**
 * The one rule for changing a human's monthly limit (`current`, as the ledger holds it), shared by
 * POST /v1/limits and both roles' forms: raising it above the ceiling needs a fresh sign-in.
 */
async function setMonthlyLimit(ledger: LimitLedger, session: Session, limit: { amount: number; currency: string }, current: { amount: number; currency: string }): Promise<void> {
  if (limit.amount > MAX_LIMIT) throw new ProblemError(422, 'invalid_request', `A monthly limit is at most ${MAX_LIMIT}.`, { errors: [{ path: '/amount', message: 'too large' }] });
  if (limit.currency !== current.currency) throw new ProblemError(422, 'invalid_request', `Limits are in ${current.currency}.`, { errors: [{ path: '/currency', message: `must be ${current.currency}` }] });
  if (limit.amount > current.amount && limit.amount > LIMIT_CEILING) requireFreshSignIn(session);
  await ledger.setOwnLimit(session.subject_id, limit);
}

/** What a page's limit form led to: set, a fresh sign-in first (§2.0), or a refusal to show beside the form. */
export type LimitFormOutcome = { kind: 'set' } | { kind: 'reauthenticate' } | { kind: 'refused'; detail: string };

/**
 * The limit form of either role's pages: dollars as typed, under the same rule as POST /v1/limits.
 * The page decides how to show each outcome.
 */
export async function setMonthlyLimitFromForm(ledger: LimitLedger, session: Session, typed: string): Promise<LimitFormOutcome> {
  const amount = centsOf(typed);
  if (amount === null) return { kind: 'refused', detail: 'Enter the limit in dollars, like 250 or 250.00.' };
  try {
    const current = await ledger.ownLimit();
    await setMonthlyLimit(ledger, session, { amount, currency: current.currency }, current);
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    return error.code === 'reauthentication_required' ? { kind: 'reauthenticate' } : { kind: 'refused', detail: error.detail };
  }
  return { kind: 'set' };
}

export type { Context };
