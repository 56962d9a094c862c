// Agents, mandates and attestations on the wire (PROTOCOL.md §2.1, §2.2).
import { z } from '@hono/zod-openapi';
import { EXTENSION_DAYS } from '../mandate-extensions';
import { MoneySchema } from './money';

const providerId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/);
const serviceId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/);

const publicKeyMembers = { kty: z.literal('OKP'), crv: z.literal('Ed25519'), x: z.string().regex(/^[A-Za-z0-9_-]{43}$/) };

/** An agent's key as the orchestrator keeps and shows it. */
export const PublicJwkSchema = z.object(publicKeyMembers).strict().openapi('AgentPublicJwk', { description: 'An Ed25519 public key (RFC 8037)' });

/**
 * An agent's key as sent: the public members, and the metadata key libraries commonly export with them (RFC 7517
 * §4), consistent with a signing key and then dropped; any other member, a private one (`d`) first, makes it invalid.
 */
const PublicJwkInputSchema = z
  .object({
    ...publicKeyMembers,
    kid: z.string().max(255).optional(),
    alg: z.enum(['EdDSA', 'Ed25519']).optional(),
    use: z.literal('sig').optional(),
    key_ops: z.array(z.literal('verify')).optional(),
  })
  .strict()
  .transform(({ kty, crv, x }) => ({ kty, crv, x }))
  .openapi('AgentPublicJwkInput', {
    description: 'An Ed25519 public key (RFC 8037). kid, alg (EdDSA), use (sig) and key_ops ([verify]) are accepted and not kept; a private member makes it invalid.',
  });

export const AgentSchema = z
  .object({
    agent_id: z.string(),
    name: z.string(),
    public_jwk: PublicJwkSchema,
    key_thumbprint: z.string().openapi({ description: 'RFC 7638 thumbprint of the key' }),
    status: z.enum(['active', 'revoked']),
    registered_via: z.enum(['principal', 'first_contact']),
    created: z.string(),
    revoked_at: z.string().nullable(),
  })
  .openapi('Agent');

export const RegisterAgentSchema = z.object({ name: z.string().trim().min(1).max(100), public_jwk: PublicJwkInputSchema }).openapi('RegisterAgent');

export const SpendLimitSchema = MoneySchema.extend({ period: z.literal('month') }).openapi('SpendLimit');

export const MandateScopeSchema = z
  .object({
    provider: providerId,
    services: z.array(serviceId).min(1).max(50),
    max_per_charge: MoneySchema.optional(),
  })
  .strict()
  .openapi('MandateScope');

export const MandateRequestSchema = z
  .object({
    description: z.string().trim().min(1).max(500),
    scope: z.array(MandateScopeSchema).min(1).max(20),
    spend_limit: SpendLimitSchema,
    expires_at: z.string().datetime(),
    share_email: z.boolean().default(false),
    supersedes: z.string().startsWith('mdt_').optional(),
    agent: z.object({ name: z.string().trim().min(1).max(100), public_jwk: PublicJwkInputSchema }).optional().openapi({
      description: 'First contact: an unregistered agent names itself and its key (the DPoP proof must be signed by it).',
    }),
  })
  .strict()
  .openapi('MandateRequest');

export type MandateRequest = z.infer<typeof MandateRequestSchema>;
export type MandateScope = z.infer<typeof MandateScopeSchema>;

export const mandateStatuses = ['pending', 'active', 'denied', 'revoked', 'superseded', 'expired'] as const;
export type MandateStatus = (typeof mandateStatuses)[number];

export const MandateSchema = z
  .object({
    mandate_id: z.string(),
    status: z.enum(mandateStatuses),
    agent_id: z.string().nullable().openapi({ description: 'null until a first-contact request is approved' }),
    description: z.string(),
    scope: z.array(MandateScopeSchema),
    spend_limit: SpendLimitSchema,
    spent: MoneySchema.optional().openapi({ description: 'In the agent’s own read: charged under this mandate (and those it supersedes) this period' }),
    expires_at: z.string(),
    share_email: z.boolean(),
    supersedes: z.string().nullable(),
    superseded_by: z.string().nullable().openapi({
      description: 'For a superseded mandate, the approved mandate that superseded it (a re-approval, or an extension its agent or its human asked for): the mandate in force is at the end of these links',
    }),
    created: z.string(),
    approval_url: z.string().url(),
    expires_in: z.number().int().optional().openapi({ description: 'Seconds left to decide a pending request' }),
    interval: z.number().int().optional().openapi({ description: 'Seconds to wait between polls while pending' }),
    user_code: z.string().optional().openapi({ description: 'Only in the response that created the request' }),
    decided_at: z.string().nullable(),
    approver_email_hint: z.string().nullable(),
    display_hash: z.string().nullable(),
    mandate_jws: z.string().nullable(),
    revoked_at: z.string().nullable(),
  })
  .openapi('Mandate');

export type Mandate = z.infer<typeof MandateSchema>;

export const ApproveMandateSchema = z
  .object({
    user_code: z.string().optional(),
    spend_limit: SpendLimitSchema.optional(),
    max_per_charge: z.record(providerId, MoneySchema).optional().openapi({ description: 'Lowered per-charge limits, by provider' }),
    display_hash: z.string().optional(),
  })
  .openapi('ApproveMandate');

export const ExtendMandateSchema = z
  .object({ days: z.literal([...EXTENSION_DAYS]).openapi({ description: `Days from now: one of ${EXTENSION_DAYS.join(', ')}` }) })
  .openapi('ExtendMandate');

export const RaiseMandateSchema = z
  .object({
    spend_limit: MoneySchema.optional().openapi({ description: 'The new monthly limit, above the approved one, in its currency' }),
    max_per_charge: z.record(providerId, MoneySchema).optional().openapi({ description: 'New per-charge limits, by provider, where the mandate has one: none lower, in its currency' }),
  })
  .refine((raise) => raise.spend_limit !== undefined || Object.keys(raise.max_per_charge ?? {}).length > 0, { message: 'name a limit to raise' })
  .openapi('RaiseMandate');
/** A raise the human asks for: a monthly limit, per-charge limits at providers that have one; each in the mandate's currency. */
export type MandateRaise = z.infer<typeof RaiseMandateSchema>;

export const AttestationRequestSchema = z.object({ mandate_id: z.string(), provider: providerId }).openapi('AttestationRequest');
export const AttestationSchema = z
  .object({
    attestation: z.string().nullable().openapi({ description: 'null only in a replay by Idempotency-Key, with attestation_redacted: records never keep credentials' }),
    expires_in: z.number().int(),
    attestation_redacted: z.boolean().optional(),
  })
  .openapi('Attestation');

/**
 * RFC 9396 authorization_details entry carried by attestations and tokens.
 * Strict: a member this verifier does not know is a constraint it cannot
 * enforce, so the entry fails closed (PROTOCOL.md §2.1).
 */
export const MandateDetailSchema = z
  .object({
    type: z.literal('oap_mandate'),
    mandate_id: z.string(),
    services: z.array(z.string()),
    max_per_charge: MoneySchema.nullable(),
    spend_limit: SpendLimitSchema,
    expires_at: z.string(),
  })
  .strict();
export type MandateDetail = z.infer<typeof MandateDetailSchema>;
