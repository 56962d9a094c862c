// `oap mcp`: the same operations as the CLI, as tools of a Model Context
// Protocol server on stdio, so any MCP-capable agent can provision through OAP.
// Input schemas are the protocol's own zod schemas (workers/lib/schemas), turned
// into JSON Schema by the MCP SDK, so a tool accepts what the wire does. Paid tools
// state the catalog's prices in their description, and never act without an
// active mandate.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';
import { formatMoney } from '../workers/lib/pages/format';
import { MandateScopeSchema } from '../workers/lib/schemas/mandates';
import { ResourceRequestSchema } from '../workers/lib/schemas/resources';
import { OapClient, OapError, type Mandate } from './sdk';

const providerField = z.string().min(1).describe('The provider id, as in the catalog (cloud, data)');
const resourceIdField = z.string().startsWith('res_').describe('The resource id, as provision and list_resources return it');

type Result = { content: { type: 'text'; text: string }[]; isError?: boolean; structuredContent?: Record<string, unknown> };

const ok = (data: unknown): Result => ({ content: [{ type: 'text', text: JSON.stringify(data, null, 2) }], structuredContent: { data } as Record<string, unknown> });
const refused = (error: unknown): Result => ({
  isError: true,
  content: [{ type: 'text', text: JSON.stringify(error instanceof OapError ? { code: error.code, message: error.message, ...(error.body.step_up_url ? { step_up_url: error.body.step_up_url } : {}) } : { code: 'failure', message: String((error as Error).message) }) }],
});

/** Where the server keeps the mandate in force, and one asked for to supersede it until the human decides (kept across restarts). */
export type MandateStore = { get(): string | undefined; set(id: string): Promise<void>; successor(): string | undefined; setSuccessor(id: string | undefined): Promise<void> };

export async function mcpServer(client: OapClient, mandate: MandateStore) {
  const server = new McpServer({ name: 'oap', version: '2026.11.0' });
  const plans = (await client.catalogs()).flatMap((c) =>
    c.services.flatMap((s) => (s.plans as { id: string; price: { amount: number; currency: string }; billing: string }[]).map((p) => ({ key: `${c.provider}/${s.id} ${p.id}`, ...p }))),
  );
  const prices = plans.map((p) => `${p.key}: ${formatMoney(p.price)} (${p.billing})`).join('; ');
  /** The price this tool's description states for a plan: the one the model chose by, and so the one it signs. */
  const statedPrice = (provider: string, service: string, plan: string) => plans.find((p) => p.key === `${provider}/${service} ${plan}`)?.price;

  /**
   * A mandate asked for to supersede the one in force, once decided: in force if approved (`adopted`, as just read),
   * forgotten either way; while pending, what it is.
   */
  const decideSuccessor = async (): Promise<{ pending?: Mandate; adopted?: Mandate }> => {
    const successor = mandate.successor();
    if (!successor) return {};
    const next = await client.mandate(successor);
    if (next.status === 'active') await mandate.set(next.mandate_id);
    if (next.status !== 'pending') await mandate.setSuccessor(undefined);
    return next.status === 'pending' ? { pending: next } : next.status === 'active' ? { adopted: next } : {};
  };
  /**
   * The mandate in force from the one kept (or one just read), adopted if the one kept was superseded meanwhile (an
   * extension its human asked for from the dashboard): a successor still pending superseded the same mandate, and so
   * can no longer be approved.
   */
  const adoptMandateInForce = async (kept: string | Mandate) => {
    const m = await client.mandateInForce(kept);
    if (m.mandate_id !== mandate.get()) {
      await mandate.set(m.mandate_id);
      await mandate.setSuccessor(undefined);
    }
    return m;
  };
  const activeMandate = async () => {
    const { adopted } = await decideSuccessor();
    const id = mandate.get();
    if (!id) throw new OapError(403, 'mandate_inactive', 'No mandate yet: call request_mandate and let the human approve it.');
    const m = await adoptMandateInForce(adopted ?? id);
    if (m.status !== 'active') throw new OapError(403, 'mandate_inactive', `The mandate is ${m.status}; a paid tool needs an active one.`);
    return m;
  };
  const guard = (fn: () => Promise<unknown>) => fn().then(ok, refused);

  server.registerTool('catalog', { description: 'Services and plans at every provider this orchestrator knows, with their prices.', inputSchema: {} }, () => guard(() => client.catalogs()));

  server.registerTool(
    'request_mandate',
    {
      description: 'Ask the human for a mandate (what the agent may buy, where, up to how much a month). Returns the approval URL and the code to show the human.',
      inputSchema: {
        scope: z.array(MandateScopeSchema).min(1).max(20),
        monthly_limit_dollars: z.number().positive(),
        days: z.number().int().positive().max(366).default(30),
        description: z.string().min(1).max(500),
      },
    },
    (args) =>
      guard(async () => {
        const pending = await client.requestMandate({
          description: args.description,
          scope: args.scope,
          spend_limit: { amount: Math.round(args.monthly_limit_dollars * 100), currency: 'usd', period: 'month' },
          expires_at: new Date(Date.now() + args.days * 86_400_000).toISOString(),
        });
        await mandate.set(pending.mandate_id);
        // A new mandate, not a successor: one asked for to supersede the old is forgotten.
        await mandate.setSuccessor(undefined);
        return { mandate_id: pending.mandate_id, approval_url: pending.approval_url, user_code: pending.user_code, status: pending.status };
      }),
  );

  server.registerTool(
    'extend_mandate',
    {
      description:
        'Ask the human for the current mandate again for another `days` (a year at most), superseding it. Recurring plans (a domain, a subscription) renew only while the mandate they were bought under, or one superseding it, is in force. Returns the approval URL and the code to show the human.',
      inputSchema: { days: z.number().int().positive().max(365).default(365) },
    },
    (args) =>
      guard(async () => {
        const m = await activeMandate();
        const pending = await client.extendMandate(m, { days: args.days });
        // The mandate in force stays so (paid tools go on under it) until the human approves this one.
        await mandate.setSuccessor(pending.mandate_id);
        return { mandate_id: pending.mandate_id, supersedes: m.mandate_id, approval_url: pending.approval_url, user_code: pending.user_code, status: pending.status };
      }),
  );

  server.registerTool(
    'mandate_status',
    { description: 'The current mandate: pending, active, denied, revoked or expired; and one asked for to supersede it, while the human has not decided.', inputSchema: {} },
    () =>
      guard(async () => {
        const { pending, adopted } = await decideSuccessor();
        const id = mandate.get();
        if (!id) throw new OapError(404, 'not_found', 'No mandate yet.');
        const inForce = await adoptMandateInForce(adopted ?? id);
        // Superseded meanwhile by the human's extension: a successor of its own is moot (adoptMandateInForce forgot it).
        return { ...inForce, ...(pending && inForce.mandate_id === id ? { pending_successor: pending } : {}) };
      }),
  );

  server.registerTool(
    'provision',
    {
      description: `PAID: provisions a resource and charges the human's payment relationship. Prices: ${prices}. Needs an active mandate that covers the provider and service.`,
      inputSchema: { provider: providerField, ...ResourceRequestSchema.shape },
    },
    (args) =>
      guard(async () => {
        const m = await activeMandate();
        const { provider, ...request } = args;
        return client.provision(m.mandate_id, provider, { ...request, expected_price: request.expected_price ?? statedPrice(provider, request.service, request.plan) });
      }),
  );

  server.registerTool(
    'remove_resource',
    {
      description: 'Deprovisions one resource: it stops serving, its credentials stop working, recurring billing stops. Nothing is refunded.',
      inputSchema: { provider: providerField, resource_id: resourceIdField },
    },
    (args) =>
      guard(async () => {
        const m = await activeMandate();
        return client.deprovision(m.mandate_id, args.provider, args.resource_id);
      }),
  );

  server.registerTool(
    'teardown',
    { description: 'Removes everything this agent provisioned under the current mandate, at every provider; reports what could not be removed.', inputSchema: {} },
    () =>
      guard(async () => {
        return client.teardown(await activeMandate());
      }),
  );

  server.registerTool(
    'list_resources',
    {
      description:
        'Resources at every provider of the mandate. A suspended one (its renewal refused: a spend limit, an ended mandate) says why in `suspension`, and where a human can raise the limit (`step_up_url`) when a limit refused it: tell your human.',
      inputSchema: {},
    },
    () =>
      guard(async () => {
        const m = await activeMandate();
        return (await Promise.all((m.scope as { provider: string }[]).map(async (s) => (await client.resources(m.mandate_id, s.provider)).map((r) => ({ provider: s.provider, ...r }))))).flat();
      }),
  );

  server.registerTool('spend', { description: 'Spend this period against each limit: the mandate’s (across providers), then each provider account’s.', inputSchema: {} }, () =>
    guard(async () => client.spend(await activeMandate())),
  );

  server.registerTool('audit', { description: "This agent's own audit trail at the orchestrator.", inputSchema: {} }, () => guard(() => client.audit()));

  await server.connect(new StdioServerTransport());
  return server;
}
