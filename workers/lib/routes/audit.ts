// GET /v1/audit and GET /v1/audit/verify, the same on every role. Each role
// supplies how a request is authenticated as a reader of one trail.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { auditEvents, auditJsonLines, verifyAuditTrail, type AuditSource } from '../audit-trail';
import { outcomes } from '../audit';
import { SignedHeadSchema } from '../audit-heads';
import { ProblemError, problemResponses } from '../problem';

export type AuditReader = {
  principal: string;
  /** The trail, and where a refused read of it is recorded (§4: every refusal is an event). */
  ledger: AuditSource & { recordRefusal(principal: string, refusal: { actor: { type: 'agent'; id: string }; action: string; reason: string }): Promise<void> | void };
  db: D1Database;
  /** An agent reads only its own events (PROTOCOL.md §4). */
  onlyActor?: string;
};

const AuditQuerySchema = z.object({
  after: z.coerce.number().int().nonnegative().default(0).openapi({ description: 'Return events with a greater seq.' }),
  agent: z.string().optional().openapi({ description: 'Only events whose actor is this agent.' }),
  mandate: z.string().optional(),
  action: z.string().optional(),
  outcome: z.enum(outcomes).optional(),
  since: z.string().datetime().optional(),
  until: z.string().datetime().optional(),
});

export const AuditVerificationSchema = z
  .object({ ok: z.boolean(), events: z.number().int(), first_broken_seq: z.number().int().nullable() })
  .openapi('AuditVerification');

const exportRoute = createRoute({
  method: 'get',
  path: '/v1/audit',
  summary: "Export the caller's audit trail as JSON Lines",
  request: { query: AuditQuerySchema },
  responses: {
    200: { description: 'One AuditEvent per line, in seq order', content: { 'application/jsonl': { schema: z.string() } } },
    ...problemResponses(401, 422),
  },
});

const verifyRoute = createRoute({
  method: 'get',
  path: '/v1/audit/verify',
  summary: "Recompute the caller's audit hash chain",
  responses: {
    200: { description: 'The verdict', content: { 'application/json': { schema: AuditVerificationSchema } } },
    ...problemResponses(401, 403),
  },
});

type AuditVariables = { auditReader: AuditReader };

export function auditRoutes(authenticate: (c: Context) => Promise<AuditReader>) {
  const app = new OpenAPIHono<{ Variables: AuditVariables }>();
  const requireReader = createMiddleware<{ Variables: AuditVariables }>(async (c, next) => {
    c.set('auditReader', await authenticate(c));
    await next();
  });
  // §4: an agent sees only its own events, so nothing that measures the whole trail (its length, its heads).
  const wholeTrailReader = (action: string) =>
    createMiddleware<{ Variables: AuditVariables }>(async (c, next) => {
      const reader = c.get('auditReader');
      if (reader.onlyActor) {
        await reader.ledger.recordRefusal(reader.principal, { actor: { type: 'agent', id: reader.onlyActor }, action, reason: 'human_required' });
        throw new ProblemError(403, 'human_required', 'The whole trail is the principal’s to verify; an agent reads its own events at GET /v1/audit.');
      }
      await next();
    });

  app.openapi({ ...exportRoute, middleware: [requireReader] }, (c) => {
    const reader = c.get('auditReader');
    const q = c.req.valid('query');
    const headers = { 'content-type': 'application/jsonl', 'cache-control': 'no-store' };
    // An agent asking for another actor's events gets none, not an error that confirms they exist.
    if (reader.onlyActor && q.agent && q.agent !== reader.onlyActor) return c.body('', 200, headers) as never;
    const events = auditEvents(reader.ledger, reader.db, reader.principal, q.after, {
      actorId: reader.onlyActor ?? q.agent,
      mandateId: q.mandate,
      action: q.action,
      outcome: q.outcome,
      since: q.since,
      until: q.until,
    });
    // JSON Lines is not JSON: the typed c.json() does not apply.
    return c.body(auditJsonLines(events), 200, headers) as never;
  });

  app.openapi(
    {
      ...createRoute({
        method: 'get',
        path: '/v1/audit/heads',
        summary: 'Signed chain heads of the caller’s trail, newest first',
        responses: {
          200: { description: 'Signed heads', content: { 'application/json': { schema: z.object({ data: z.array(SignedHeadSchema) }) } } },
          ...problemResponses(401, 403),
        },
      }),
      middleware: [requireReader, wholeTrailReader('audit.heads')],
    },
    async (c) => {
      const reader = c.get('auditReader');
      const heads = (await reader.ledger.signedHeads?.(20)) ?? [];
      return c.json({ data: heads as z.infer<typeof SignedHeadSchema>[] }, 200);
    },
  );

  app.openapi({ ...verifyRoute, middleware: [requireReader, wholeTrailReader('audit.verify')] }, async (c) => {
    const reader = c.get('auditReader');
    return c.json(await verifyAuditTrail(reader.ledger, reader.db, reader.principal), 200);
  });
  return app;
}
