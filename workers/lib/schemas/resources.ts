// Resources, operations and usage on the wire (PROTOCOL.md §3.1).
import { z } from '@hono/zod-openapi';
import { MoneySchema } from './money';

export const ResourceRequestSchema = z
  .object({
    service: z.string().min(1),
    plan: z.string().min(1),
    parameters: z.record(z.string(), z.unknown()).default({}),
    expected_price: MoneySchema.optional().openapi({ description: 'The price the agent saw; a different catalog price is 409 price_changed' }),
  })
  .openapi('ResourceRequest');

export const ResourceSchema = z
  .object({
    resource_id: z.string(),
    service: z.string(),
    plan: z.string(),
    status: z.enum(['provisioning', 'active', 'failed', 'deleted', 'suspended']),
    created: z.string(),
    renews_at: z.string().optional().openapi({
      description: 'A recurring plan: when it renews next; while suspended by a declined renewal, when that renewal is tried again (absent once the tries have ended)',
    }),
    suspension: z
      .object({
        code: z.string().openapi({ description: 'The renewal’s refusal, as the latest try was refused: spend_limit_exceeded, velocity_limited, mandate_inactive, charge_voided, …' }),
        by: z.enum(['provider', 'orchestrator']).openapi({ description: 'Where the renewal was refused: this account’s own limit here, or at the orchestrator (its mandate and limits, or its hold run out)' }),
        step_up_url: z.string().nullable().openapi({ description: 'Where a human raises the spend limit that refused it (a page of the party in `by`); null for any other refusal' }),
        since: z.string(),
      })
      .optional()
      .openapi({ description: 'Why a suspended resource is suspended, for its agent to tell the human' }),
    credentials: z.record(z.string(), z.unknown()).nullable().optional(),
    credentials_redacted: z.boolean().optional(),
  })
  .catchall(z.unknown())
  .openapi('Resource');

export const ProvisionedSchema = ResourceSchema.extend({
  charge_id: z.string(),
  audit_event_id: z.string(),
  receipt: z.string().openapi({ description: 'The provider’s signed receipt (compact JWS, §4)' }),
}).openapi('ProvisionedResource');

/** A resource after a DELETE or a rotation: with the event that recorded it (null when a DELETE found it deleted already). */
export const ResourceChangedSchema = ResourceSchema.extend({ audit_event_id: z.string().nullable() }).openapi('ResourceChanged');

export const PlanChangeSchema = z
  .object({
    plan: z.string().min(1).openapi({ description: 'One of the current plan’s allowed_updates' }),
    expected_price: MoneySchema.openapi({ description: 'The new plan’s full catalog price, which later renewals charge; a different price is 409 price_changed' }),
  })
  .openapi('PlanChange');

export const PlanChangedSchema = ResourceSchema.extend({
  charge_id: z.string().openapi({ description: 'The change’s charge at the orchestrator ($0 for a downgrade): later renewals name it' }),
  charged: MoneySchema.openapi({ description: 'The pro-rata difference for the rest of the period, when the new plan costs more' }),
  credited: MoneySchema.openapi({ description: 'The pro-rata credit against the period’s charge, when the new plan costs less; refunded once the change’s charge is captured' }),
  audit_event_id: z.string(),
  receipt: z.string().openapi({ description: 'The provider’s signed receipt (compact JWS, §4)' }),
}).openapi('PlanChanged');

export const OperationSchema = z
  .object({
    operation_id: z.string(),
    status: z.enum(['pending', 'succeeded', 'failed']),
    resource: ResourceSchema.optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    charge_id: z.string().nullable().optional(),
    audit_event_id: z.string().nullable().optional().openapi({ description: 'In the 202: the event that began the paid call' }),
  })
  .openapi('Operation');

export const UsageSchema = z
  .object({ period: z.string(), limit: MoneySchema, spent: MoneySchema, services: z.array(z.object({ service: z.string(), spent: MoneySchema })) })
  .openapi('Usage');
