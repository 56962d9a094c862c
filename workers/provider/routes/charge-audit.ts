// GET /v1/charges/{id}/audit: the provider's side of a charge's trail, for the
// orchestrator gathering dispute evidence (§5: both parties' events). Asked
// with a short-lived token the orchestrator signs (typ oap-orchestrator+jwt),
// bound to the method and URL; answers only for a principal of that orchestrator.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { createMiddleware } from 'hono/factory';
import type { RoleEnv } from '../../lib/app';
import { AuditEventSchema, type AuditEvent } from '../../lib/audit';
import { SignedHeadSchema } from '../../lib/audit-heads';
import { auditEvents } from '../../lib/audit-trail';
import { issuerKeys } from '../../lib/jwks-cache';
import { ProblemError, problemResponses } from '../../lib/problem';
import { ORCHESTRATOR_ALGS } from '../../lib/jws';
import { claimedIssuer, verifyRequestToken } from '../../lib/request-tokens';
import { ledgerOf, providerConfig, type ProviderBindings } from '../env';
import { linkedAccount } from '../store/accounts';

const refused = (detail: string) => new ProblemError(401, 'unauthorized', `Orchestrator authentication failed: ${detail}.`);

type ChargeAuditEnv = RoleEnv<ProviderBindings> & { Variables: { orchestrator: string } };

/**
 * The request token, checked before the parameters are (PROTOCOL.md Conventions: a stranger
 * learns nothing of what this route accepts); sets the orchestrator it authenticates.
 */
const requireOrchestrator = createMiddleware<ChargeAuditEnv>(async (c, next) => {
  const config = providerConfig(c.env);
  const [scheme, token] = (c.req.header('authorization') ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) throw refused('send Authorization: Bearer <oap-orchestrator+jwt>');
  let iss: string | undefined;
  try {
    iss = claimedIssuer(token, 'oap-orchestrator+jwt', ORCHESTRATOR_ALGS);
  } catch {
    throw refused('not an orchestrator request token');
  }
  if (!iss || !config.TRUSTED_ORCHESTRATORS.includes(iss)) throw refused('untrusted issuer');
  try {
    await verifyRequestToken(token, { typ: 'oap-orchestrator+jwt', issuer: iss, keys: issuerKeys(iss), audience: config.PUBLIC_BASE_URL, method: 'GET', url: `${config.PUBLIC_BASE_URL}${c.req.path}`, algorithms: ORCHESTRATOR_ALGS });
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
          content: {
            'application/json': {
              schema: z
                .object({
                  account_id: z.string(),
                  events: z.array(AuditEventSchema),
                  signed_head: SignedHeadSchema.nullable().openapi({ description: 'The account’s latest signed head' }),
                  heads: z.array(SignedHeadSchema).openapi({ description: 'For each event, a head this provider signed at that event’s seq: its proof, shown alone' }),
                })
                .openapi('ChargeAudit'),
            },
          },
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
      const [head] = await ledger.signedHeads(1);
      // The chain proof of each event, shown alone: a head this provider signed at that very event, so
      // nothing of the account's other events (other charges, other orchestrators) goes with it.
      const heads = await ledger.headsAt(events.map(({ seq, hash }) => ({ seq, hash })));
      return c.json({ account_id: link.account_id, events, signed_head: head ?? null, heads }, 200);
    },
  );
  return app;
}
