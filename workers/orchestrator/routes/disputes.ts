// Disputes (PROTOCOL.md §5), opened and read by the principal.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { acceptBody, validationProblem, type RoleEnv } from '../../lib/app';
import { EVIDENCE_FORMAT } from '../../lib/adjudicator';
import { ProblemError, problemResponses } from '../../lib/problem';
import { isFormRequest, type SessionVariables } from '../../lib/sessions';
import type { DisputeRecord } from '../../../durable-objects/ledger/disputes';
import { openDispute, toDisputeWire } from '../disputes';
import { ledgerOf, type OrchestratorBindings } from '../env';
import { principalIdempotent } from '../idempotent';
import { principalSession } from '../session';

const DisputeSchema = z
  .object({
    dispute_id: z.string(),
    charge_id: z.string(),
    reason: z.string(),
    verdict: z.enum(['within_scope', 'outside_scope', 'insufficient_evidence']),
    failing_party: z.enum(['orchestrator', 'provider']).nullable(),
    findings: z.array(z.object({ check: z.string(), result: z.enum(['pass', 'fail', 'missing']), evidence: z.string() })),
    adjudicator: z.string(),
    evidence_url: z.string().url(),
    created: z.string(),
  })
  .openapi('Dispute');
const DisputeId = z.object({ id: z.string().startsWith('dsp_') });
const NewDisputeSchema = z.object({ charge_id: z.string().startsWith('chg_'), reason: z.string().trim().min(1).max(1000) }).openapi('NewDispute');

export function disputeRoutes() {
  const app = new OpenAPIHono<RoleEnv<OrchestratorBindings> & { Variables: SessionVariables }>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/disputes',
      summary: 'Dispute a captured charge; the verdict is decided from the evidence at once',
      middleware: [principalSession, acceptBody('json', 'form'), principalIdempotent] as const,
      request: {
        body: {
          required: false,
          content: { 'application/json': { schema: NewDisputeSchema }, 'application/x-www-form-urlencoded': { schema: NewDisputeSchema } },
        },
      },
      responses: {
        201: { description: 'Decided', content: { 'application/json': { schema: DisputeSchema } } },
        303: { description: 'Form post: to the page that shows the verdict' },
        ...problemResponses(400, 401, 403, 404, 409, 415, 422, 503),
      },
    }),
    async (c) => {
      const form = isFormRequest(c);
      const parsed = NewDisputeSchema.safeParse(form ? await c.req.parseBody() : await c.req.json());
      if (!parsed.success) {
        throw validationProblem(parsed.error.issues, () => 'charge_id and reason are required.');
      }
      const dispute = await openDispute(c.env, c.get('session').subject_id, parsed.data);
      if (form) return c.redirect(`/dashboard/disputes/${dispute.dispute_id}`, 303) as never;
      return c.json(dispute as z.infer<typeof DisputeSchema>, 201);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/disputes/{id}',
      summary: 'A dispute, its verdict and findings',
      middleware: [principalSession] as const,
      request: { params: DisputeId },
      responses: { 200: { description: 'The dispute', content: { 'application/json': { schema: DisputeSchema } } }, ...problemResponses(401, 404) },
    }),
    async (c) => {
      const dispute = (await ledgerOf(c.env, c.get('session').subject_id).getDispute(c.req.valid('param').id)) as DisputeRecord | null;
      if (!dispute) throw new ProblemError(404, 'not_found', 'No such dispute.');
      return c.json(toDisputeWire(c.env, dispute) as z.infer<typeof DisputeSchema>, 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/disputes/{id}/evidence',
      summary: 'The evidence bundle the verdict was decided on, verifiable offline with its public keys',
      middleware: [principalSession] as const,
      request: { params: DisputeId },
      responses: { 200: { description: `The bundle (format ${EVIDENCE_FORMAT}; the verifier still reads oap-evidence/1)`, content: { 'application/json': { schema: z.record(z.string(), z.unknown()) } } }, ...problemResponses(401, 404) },
    }),
    async (c) => {
      const dispute = (await ledgerOf(c.env, c.get('session').subject_id).getDispute(c.req.valid('param').id)) as DisputeRecord | null;
      if (!dispute) throw new ProblemError(404, 'not_found', 'No such dispute.');
      return c.body(dispute.evidence, 200, { 'content-type': 'application/json', 'cache-control': 'no-store' }) as never;
    },
  );

  return app;
}
