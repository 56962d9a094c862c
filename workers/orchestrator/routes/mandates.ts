// Mandates (PROTOCOL.md §2.1): requested and polled by agents, decided,
// extended and revoked by principals. Approve and deny accept JSON and the
// approval page's form.
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import type { Context } from 'hono';
import { createMiddleware } from 'hono/factory';
import { acceptBody, validationProblem, type RoleEnv } from '../../lib/app';
import { paginate, ListQuerySchema } from '../../lib/pagination';
import { ProblemError, problemResponses } from '../../lib/problem';
import { ApproveMandateSchema, ExtendMandateSchema, MandateRequestSchema, MandateSchema, RaiseMandateSchema } from '../../lib/schemas/mandates';
import { isFormRequest, readSession, type Session, type SessionVariables } from '../../lib/sessions';
import { authenticateAgent, requireAgent, type AgentCaller, type AgentVariables } from '../agent-auth';
import { sessionConfigOf, type OrchestratorBindings } from '../env';
import {
  approveMandate,
  denyMandate,
  displayDocument,
  extendMandateForPrincipal,
  raiseMandateForPrincipal,
  findMandateForPrincipal,
  checkUserCode,
  listMandatesOfAgent,
  listMandatesOfPrincipal,
  pollMandateAsAgent,
  requestMandate,
  revokeMandate,
  toWire,
  type ApprovalInput,
} from '../mandates';
import { agentIdempotent, principalIdempotent } from '../idempotent';
import { typedLimits } from '../pages/limit-fields';
import { principalSession } from '../session';
import { decisionResponse } from './decisions';

type Env = RoleEnv<OrchestratorBindings> & { Variables: SessionVariables & AgentVariables & { caller: Caller } };
type Caller = { kind: 'principal'; session: Session } | { kind: 'agent'; agent: AgentCaller };

const MandateId = z.object({ id: z.string().startsWith('mdt_') });
const MandateList = z.object({ data: z.array(MandateSchema), has_more: z.boolean() });
const agentProof = z.object({ dpop: z.string().optional().openapi({ description: "RFC 9449 proof signed by the agent's key (§2.4)" }) });

/** Reads of a mandate: its agent (a DPoP proof) or its principal (a session). */
const agentOrPrincipal = createMiddleware<Env>(async (c, next) => {
  if (c.req.header('dpop') !== undefined) {
    c.set('caller', { kind: 'agent', agent: await authenticateAgent(c, 'mandate.read', true) });
  } else {
    const session = await readSession(c, c.env.DB, sessionConfigOf(c.env));
    if (!session) throw new ProblemError(401, 'unauthorized', 'Sign in, or prove an agent key with a DPoP proof.');
    c.set('caller', { kind: 'principal', session });
  }
  await next();
});

const DenyMandateSchema = ApproveMandateSchema.pick({ user_code: true });

/** A JSON decision body: none (or unreadable) is `{}`; anything else must be the schema's object, or 422. */
async function decisionJson<T extends z.ZodTypeAny>(c: Context, schema: T, what: string): Promise<z.infer<T>> {
  const parsed = schema.safeParse(await c.req.json().catch(() => ({})));
  if (!parsed.success) {
    throw validationProblem(parsed.error.issues, () => `The ${what} is invalid.`);
  }
  return parsed.data;
}

/** Form fields of the approval page (pages/limit-fields.ts), or the JSON body. */
async function approvalInput(c: Context): Promise<ApprovalInput> {
  if (!isFormRequest(c)) return decisionJson(c, ApproveMandateSchema, 'approval');
  const form = await c.req.parseBody();
  const { spend_limit, max_per_charge } = typedLimits(form);
  return {
    user_code: typeof form.user_code === 'string' && form.user_code ? form.user_code : undefined,
    display_hash: typeof form.display_hash === 'string' && form.display_hash ? form.display_hash : undefined,
    spend_limit: spend_limit ? { ...spend_limit, period: 'month' } : undefined,
    max_per_charge: Object.keys(max_per_charge).length ? max_per_charge : undefined,
  };
}

/** Deny carries only the user code of a first-contact request, from the page's form or as JSON. */
async function denialUserCode(c: Context): Promise<string | undefined> {
  if (!isFormRequest(c)) return (await decisionJson(c, DenyMandateSchema, 'denial')).user_code;
  const form = await c.req.parseBody();
  return typeof form.user_code === 'string' && form.user_code ? form.user_code : undefined;
}

/** A form post that fails goes back to the approval page with the reason; JSON callers get the problem. */
async function orBackToPage<T>(c: Context, mandateId: string, run: () => Promise<T>): Promise<T | Response> {
  try {
    return await run();
  } catch (error) {
    if (isFormRequest(c) && error instanceof ProblemError) return c.redirect(`/mandates/${mandateId}/approval?error=${error.code}`, 303);
    throw error;
  }
}

export function mandateRoutes() {
  const app = new OpenAPIHono<Env>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/mandates',
      summary: 'Ask for a mandate (a registered agent, or first contact from an unregistered key)',
      middleware: [requireAgent('mandate.request', true), acceptBody('json'), agentIdempotent] as const,
      request: { headers: agentProof, body: { required: true, content: { 'application/json': { schema: MandateRequestSchema } } } },
      responses: {
        201: { description: 'Pending the human’s decision', content: { 'application/json': { schema: MandateSchema } } },
        ...problemResponses(400, 401, 409, 415, 422),
      },
    }),
    async (c) => {
      const mandate = await requestMandate(c.env, c.get('agent'), c.req.valid('json'), c.req.header('cf-connecting-ip') ?? null);
      return c.json(mandate, 201, { Location: `/v1/mandates/${mandate.mandate_id}` });
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/mandates',
      summary: "The caller's mandates: a principal's, or an agent's own",
      middleware: [agentOrPrincipal] as const,
      request: { headers: agentProof, query: ListQuerySchema },
      responses: { 200: { description: 'Mandates, newest first', content: { 'application/json': { schema: MandateList } } }, ...problemResponses(401, 422) },
    }),
    async (c) => {
      const caller = c.get('caller');
      const all = caller.kind === 'principal' ? await listMandatesOfPrincipal(c.env, caller.session.subject_id) : await listMandatesOfAgent(c.env, caller.agent);
      return c.json(paginate(all, c.req.valid('query'), (m) => m.mandate_id), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/mandates/{id}',
      summary: 'Read (agents: poll) a mandate',
      middleware: [agentOrPrincipal] as const,
      request: { params: MandateId, headers: agentProof },
      responses: { 200: { description: 'The mandate', content: { 'application/json': { schema: MandateSchema } } }, ...problemResponses(401, 404, 429) },
    }),
    async (c) => {
      const caller = c.get('caller');
      const { id } = c.req.valid('param');
      if (caller.kind === 'agent') return c.json(await pollMandateAsAgent(c.env, caller.agent, id), 200);
      const view = await findMandateForPrincipal(c.env, caller.session.subject_id, id);
      if (view.kind !== 'owned') throw new ProblemError(404, 'not_found', 'No such mandate.');
      return c.json(toWire(c.env, view.mandate), 200);
    },
  );

  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/mandates/{id}/display',
      summary: 'The canonical display document the approval page renders; display_hash is its JCS SHA-256',
      middleware: [principalSession] as const,
      request: { params: MandateId, query: z.object({ user_code: z.string().optional() }) },
      responses: {
        200: { description: 'The display document and its hash', content: { 'application/json': { schema: z.object({ display: z.record(z.string(), z.unknown()), display_hash: z.string() }) } } },
        ...problemResponses(401, 403, 404),
      },
    }),
    async (c) => {
      const principalId = c.get('session').subject_id;
      const view = await findMandateForPrincipal(c.env, principalId, c.req.valid('param').id);
      checkUserCode(view, c.req.valid('query').user_code);
      const { document, hash } = await displayDocument(c.env, principalId, view);
      return c.json({ display: document, display_hash: hash }, 200, { 'cache-control': 'no-store' });
    },
  );

  const decisionRoute = (action: 'approve' | 'deny' | 'revoke', summary: string) =>
    createRoute({
      method: 'post',
      path: `/v1/mandates/{id}/${action}`,
      summary,
      middleware: [principalSession, principalIdempotent] as const,
      request: {
        params: MandateId,
        ...(action === 'approve'
          ? { body: { required: false, content: { 'application/json': { schema: ApproveMandateSchema }, 'application/x-www-form-urlencoded': { schema: z.object({}).passthrough() } } } }
          : {}),
      },
      responses: {
        200: { description: 'The updated mandate', content: { 'application/json': { schema: MandateSchema } } },
        303: { description: 'Form post: to the approval page' },
        ...problemResponses(400, 401, 403, 404, 409, 422),
      },
    });

  app.openapi(decisionRoute('approve', 'Approve a mandate (principal session + CSRF), possibly with lowered limits'), async (c) => {
    const { id } = c.req.valid('param');
    const result = await orBackToPage(c, id, async () => approveMandate(c.env, c.get('session'), id, await approvalInput(c)));
    return (result instanceof Response ? result : decisionResponse(c, result, `/mandates/${id}/approval`)) as never;
  });

  app.openapi(decisionRoute('deny', 'Deny a pending mandate (principal session + CSRF); a first-contact request is denied with its user code, as the optional JSON body {"user_code": …}'), async (c) => {
    const { id } = c.req.valid('param');
    const result = await orBackToPage(c, id, async () => denyMandate(c.env, c.get('session'), id, await denialUserCode(c)));
    return (result instanceof Response ? result : decisionResponse(c, result, `/mandates/${id}/approval`)) as never;
  });

  app.openapi(decisionRoute('revoke', 'Revoke a mandate: attestations and charges stop at once, providers are told'), async (c) => {
    const { id } = c.req.valid('param');
    return decisionResponse(c, await revokeMandate(c.env, c.get('session').subject_id, id), `/mandates/${id}/approval`) as never;
  });

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/mandates/{id}/extend',
      summary:
        'Ask, as the principal (session + CSRF), for an active mandate’s terms until `days` from now, superseding it: a pending request on behalf of its agent, approved like any other (the dashboard’s Extend)',
      middleware: [principalSession, acceptBody('json'), principalIdempotent] as const,
      request: {
        params: MandateId,
        body: {
          required: true,
          content: { 'application/json': { schema: ExtendMandateSchema } },
        },
      },
      responses: {
        201: { description: 'Pending the human’s approval; its agent finds it as the mandate’s superseded_by once approved', content: { 'application/json': { schema: MandateSchema } } },
        ...problemResponses(400, 401, 403, 404, 409, 415, 422),
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const mandate = await extendMandateForPrincipal(c.env, c.get('session').subject_id, id, c.req.valid('json').days);
      return c.json(mandate, 201, { Location: `/v1/mandates/${mandate.mandate_id}` });
    },
  );

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/mandates/{id}/raise',
      summary:
        'Ask, as the principal (session + CSRF), for an active mandate’s terms with raised limits, superseding it: a pending request on behalf of its agent, approved like any other (where a charge’s step_up_url leads)',
      middleware: [principalSession, acceptBody('json'), principalIdempotent] as const,
      request: { params: MandateId, body: { required: true, content: { 'application/json': { schema: RaiseMandateSchema } } } },
      responses: {
        201: { description: 'Pending the human’s approval; its agent finds it as the mandate’s superseded_by once approved', content: { 'application/json': { schema: MandateSchema } } },
        ...problemResponses(400, 401, 403, 404, 409, 415, 422),
      },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const mandate = await raiseMandateForPrincipal(c.env, c.get('session').subject_id, id, c.req.valid('json'));
      return c.json(mandate, 201, { Location: `/v1/mandates/${mandate.mandate_id}` });
    },
  );

  return app;
}
