// GET /v1/charges/{id}/audit: the provider's side of a charge's trail, for the
// orchestrator gathering dispute evidence (§5: both parties' events). Asked
// with a short-lived token the orchestrator signs (typ oap-orchestrator+jwt),
// bound to the method and URL; answers only for a principal of that orchestrator.
// With the events, their chain proof: runs of the account's chain through signed
// heads, in which the account's other events are redacted to their place in it.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { createMiddleware } from 'hono/factory';
import { decodeJwt, jwtVerify } from 'jose';
import type { RoleEnv } from '../../lib/app';
import { AuditEventSchema, type AuditEvent } from '../../lib/audit';
import { SignedHeadSchema } from '../../lib/audit-heads';
import { auditEvents, runsThroughHeads } from '../../lib/audit-trail';
import { checkJwsHeader, ED25519_ALGS } from '../../lib/jws';
import { issuerKeys } from '../../lib/jwks-cache';
import { ProblemError, problemResponses } from '../../lib/problem';
import { ledgerOf, providerConfig, type ProviderBindings } from '../env';
import { linkedAccount } from '../store/accounts';

const refused = (detail: string) => new ProblemError(401, 'unauthorized', `Orchestrator authentication failed: ${detail}.`);

/** An event of the account that is not about the charge: only where it sits in the chain. */
const RedactedAuditEventSchema = z
  .object({ seq: z.number().int().positive(), prev_hash: z.string(), hash: z.string() })
  .openapi('RedactedAuditEvent', { description: 'An event of the account’s chain that is not about this charge: only its seq and the hashes that link it' });

const ChargeAuditSchema = z
  .object({
    account_id: z.string(),
    events: z.array(AuditEventSchema).openapi({ description: 'The charge’s own events, in chain order' }),
    signed_head: SignedHeadSchema.nullable().openapi({ description: 'The account’s latest signed head' }),
    runs: z.array(z.union([AuditEventSchema, RedactedAuditEventSchema])).openapi({
      description:
        'The chain proof of `events`: for each, the run of the account’s chain from it through the first signed head at or after it (runs in seq order, a run that another covers is not repeated). Events about this charge are whole; the others are redacted, and still cannot be altered without breaking the next event’s prev_hash.',
    }),
    heads: z.array(SignedHeadSchema).openapi({ description: 'The signed head each run of `runs` ends at, in seq order' }),
  })
  .openapi('ChargeAudit');

type ChargeAuditEnv = RoleEnv<ProviderBindings> & { Variables: { orchestrator: string } };

/**
 * The request token, checked before the parameters are (PROTOCOL.md Conventions: a stranger
 * learns nothing of what this route accepts); sets the orchestrator it authenticates.
 */
const requireOrchestrator = createMiddleware<ChargeAuditEnv>(async (c, next) => {
  const config = providerConfig(c.env);
  const [scheme, token] = (c.req.header('authorization') ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) throw refused('send Authorization: Bearer <oap-orchestrator+jwt>');
  let iss: string;
  try {
    if (checkJwsHeader(token).typ !== 'oap-orchestrator+jwt') throw new Error('typ');
    iss = String(decodeJwt(token).iss);
  } catch {
    throw refused('not an orchestrator request token');
  }
  if (!config.TRUSTED_ORCHESTRATORS.includes(iss)) throw refused('untrusted issuer');
  try {
    const { payload } = await jwtVerify(token, issuerKeys(iss), { typ: 'oap-orchestrator+jwt', algorithms: ED25519_ALGS, issuer: iss, audience: config.PUBLIC_BASE_URL, requiredClaims: ['exp', 'iat'] });
    if (payload.exp! - payload.iat! > 60 || payload.htm !== 'GET' || payload.htu !== `${config.PUBLIC_BASE_URL}${c.req.path}`) throw new Error('binding');
  } catch {
    throw refused('the token does not verify, has expired, or is not for this request');
  }
  c.set('orchestrator', iss);
  await next();
});

export function chargeAuditRoutes() {
  const app = new OpenAPIHono<ChargeAuditEnv>();
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/charges/{id}/audit',
      summary: 'The provider’s audit events for one charge, with its latest signed head (orchestrator-authenticated)',
      middleware: [requireOrchestrator] as const,
      request: {
        params: z.object({ id: z.string().startsWith('chg_') }),
        query: z.object({ sub: z.string().min(1).openapi({ description: 'The principal’s pairwise subject at this provider' }) }),
        headers: z.object({ authorization: z.string().optional().openapi({ description: 'Bearer <oap-orchestrator+jwt>' }) }),
      },
      responses: {
        200: {
          description: 'The events',
          content: { 'application/json': { schema: ChargeAuditSchema } },
        },
        ...problemResponses(401, 404, 422),
      },
    }),
    async (c) => {
      const iss = c.get('orchestrator');
      const chargeId = c.req.valid('param').id;
      const link = await linkedAccount(c.env.DB, iss, c.req.valid('query').sub);
      if (!link) throw new ProblemError(404, 'not_found', 'No such charge for this principal.');
      const ledger = ledgerOf(c.env, link.account_id);
      const saga = await ledger.sagaOfCharge(chargeId);
      // Only the orchestrator the charge was made through reads its trail (an account may be linked to several).
      if (!saga || saga.orchestrator !== iss) throw new ProblemError(404, 'not_found', 'No such charge for this principal.');
      const ids = new Set([chargeId, saga.resource_id, saga.hold_id]);
      const events: AuditEvent[] = [];
      for await (const event of auditEvents(ledger, c.env.DB, link.account_id, 0, { mandateId: saga.mandate_id })) {
        if ((event.target && ids.has(event.target)) || event.related.some((r) => ids.has(r))) events.push(event);
      }
      // The chain proof: the account's other events (charges through other orchestrators, other principals) are redacted.
      const about = new Set(events.map((e) => e.seq));
      const { runs, heads } = (await runsThroughHeads(ledger, c.env.DB, link.account_id, events, (e) => about.has(e.seq))) ?? { runs: [], heads: [] };
      const [head] = await ledger.signedHeads(1);
      return c.json({ account_id: link.account_id, events, signed_head: head ?? null, runs, heads }, 200);
    },
  );
  return app;
}
