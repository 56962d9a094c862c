// The constraints a signed mandate carries. A verifier evaluates only the
// types it knows; a mandate with any other type fails closed (PROTOCOL.md §2.1),
// so a newer orchestrator can never widen what an older verifier allows.
import type { Money } from './schemas/money';

export type MandateConstraint =
  | { type: 'provider_services'; provider: string; services: string[] }
  | { type: 'max_per_charge'; provider: string; limit: Money }
  | { type: 'spend_limit'; limit: Money & { period: 'month' } }
  | { type: 'not_after'; time: string };

export const KNOWN_CONSTRAINT_TYPES = ['provider_services', 'max_per_charge', 'spend_limit', 'not_after'] as const;

export type MandateClaims = {
  iss: string;
  sub: string;
  mandate_id: string;
  agent_id: string;
  cnf: { jkt: string };
  approved_at: string;
  display_hash: string;
  supersedes: string | null;
  share_email: boolean;
  constraints: MandateConstraint[];
};

export function constraintsFromTerms(terms: {
  scope: { provider: string; services: string[]; max_per_charge?: Money | undefined }[];
  spend_limit: Money & { period: 'month' };
  expires_at: string;
}): MandateConstraint[] {
  return [
    ...terms.scope.map((s) => ({ type: 'provider_services' as const, provider: s.provider, services: [...s.services] })),
    ...terms.scope.flatMap((s) => (s.max_per_charge ? [{ type: 'max_per_charge' as const, provider: s.provider, limit: s.max_per_charge }] : [])),
    { type: 'spend_limit', limit: terms.spend_limit },
    { type: 'not_after', time: terms.expires_at },
  ];
}

export type ConstraintVerdict = { ok: true; services: string[]; max_per_charge: Money | null } | { ok: false; reason: string };

/** What a mandate allows at one provider, or why it allows nothing. */
export function evaluateForProvider(constraints: unknown, provider: string, now = Date.now()): ConstraintVerdict {
  if (!Array.isArray(constraints)) return { ok: false, reason: 'the mandate has no constraints' };
  let services: string[] | null = null;
  let maxPerCharge: Money | null = null;
  for (const c of constraints as { type?: unknown }[]) {
    if (!KNOWN_CONSTRAINT_TYPES.includes(c?.type as never)) return { ok: false, reason: `unknown constraint type ${String(c?.type)}` };
    const constraint = c as MandateConstraint;
    if (constraint.type === 'provider_services' && constraint.provider === provider) services = [...(services ?? []), ...constraint.services];
    if (constraint.type === 'max_per_charge' && constraint.provider === provider) maxPerCharge = constraint.limit;
    if (constraint.type === 'not_after' && now >= Date.parse(constraint.time)) return { ok: false, reason: 'the mandate has expired' };
  }
  if (!services) return { ok: false, reason: `provider ${provider} is not in the mandate's scope` };
  return { ok: true, services, max_per_charge: maxPerCharge };
}
