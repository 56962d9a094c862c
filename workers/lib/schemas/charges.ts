// Charges and limits on the wire (PROTOCOL.md §3.1 step 3, §3.2).
import { z } from '@hono/zod-openapi';
import { MoneySchema } from './money';

export const AgentRequestSchema = z
  .object({
    method: z.enum(['POST', 'PATCH', 'DELETE']),
    target_uri: z.string().url(),
    body: z.string().max(1024 * 1024),
    content_digest: z.string(),
    signature_input: z.string(),
    signature: z.string(),
  })
  .openapi('AgentSignedRequest');

export const ChargeRequestSchema = z
  .object({
    mandate_id: z.string().startsWith('mdt_'),
    principal_sub: z.string().min(1),
    agent_id: z.string().startsWith('agt_'),
    service: z.string().min(1),
    plan: z.string().min(1),
    amount: z.number().int().nonnegative(),
    currency: z.string().regex(/^[a-z]{3}$/),
    description: z.string().max(500),
    resource_ref: z.string().max(200).nullable().optional(),
    idempotency_key: z.string().min(1).max(255),
    token_jti: z.string().min(1),
    agent_request: AgentRequestSchema.optional().openapi({ description: 'The agent’s signed call; required unless renewal_of is given' }),
    renewal_of: z.string().startsWith('chg_').optional().openapi({ description: 'A recurring plan’s renewal: the captured charge it renews, on the resource named by resource_ref' }),
    provider_audit_event_id: z.string().startsWith('evt_').optional().openapi({ description: 'The provider’s audit event for this charge, cross-referenced in the orchestrator’s' }),
  })
  .refine((b) => (b.agent_request === undefined) !== (b.renewal_of === undefined), { message: 'exactly one of agent_request and renewal_of', path: ['agent_request'] })
  // A resource renews its latest charge, and only one: which resource is what ties a renewal chain together.
  .refine((b) => b.renewal_of === undefined || (b.resource_ref ?? null) !== null, { message: 'a renewal names the resource it renews', path: ['resource_ref'] })
  .openapi('ChargeRequest');

/** A provider gives back part of a captured charge (a downgrade's pro-rata credit); applied once per key. */
export const RefundRequestSchema = z
  .object({
    amount: z.number().int().positive(),
    currency: z.string().regex(/^[a-z]{3}$/),
    reason: z.string().min(1).max(200),
    idempotency_key: z.string().min(1).max(255).openapi({ description: 'A retry with the same key answers the same, refunding nothing more' }),
  })
  .openapi('RefundRequest');

export type RefundRequest = z.infer<typeof RefundRequestSchema>;

export const chargeStatuses = ['authorized', 'captured', 'voided', 'refunded'] as const;

export const ChargeSchema = z
  .object({
    charge_id: z.string(),
    status: z.enum(chargeStatuses),
    amount: z.number().int(),
    currency: z.string(),
    amount_refunded: z.number().int().openapi({ description: 'How much of a captured charge was given back (pro-rata credits, refunds); all of it when `refunded`' }),
    provider: z.string().nullable(),
    service: z.string().nullable(),
    plan: z.string().nullable(),
    mandate_id: z.string().nullable(),
    agent_id: z.string().nullable(),
    description: z.string().nullable(),
    resource_ref: z.string().nullable(),
    created: z.string(),
    hold_expires_at: z.string().nullable(),
    resolved_at: z.string().nullable(),
    receipt: z.string().nullable(),
    audit_event_id: z.string().nullable().optional().openapi({ description: 'On authorization: the orchestrator’s audit event, for the provider to cross-reference' }),
    decision: z
      .object({ mandate_status: z.string(), constraint_results: z.array(z.object({ type: z.string(), pass: z.boolean() })) })
      .nullable()
      .openapi({ description: 'What the authorization checked, in order (evidence for receipts and disputes)' }),
  })
  .openapi('Charge');

export type Charge = z.infer<typeof ChargeSchema>;

export const LimitRowSchema = z
  .object({ scope: z.enum(['principal', 'mandate']), id: z.string().nullable().optional(), limit: MoneySchema, spent: MoneySchema, period: z.string() })
  .openapi('Limit');

export const SetLimitSchema = MoneySchema.openapi('SetLimit', { description: 'The new monthly limit of the signed-in principal (or provider account)' });

export const NotificationSchema = z
  .object({ id: z.string(), type: z.string(), created: z.string(), data: z.record(z.string(), z.unknown()) })
  .openapi('Notification');
