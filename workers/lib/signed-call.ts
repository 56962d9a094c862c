// What an agent's signed paid call agrees to (PROTOCOL.md §3.1): where it
// goes and what it costs. A creation is a POST to the provider's resources,
// charged exactly the `expected_price` it names (none named, the provider's
// published price holds, which the orchestrator reads from the catalog); a
// plan change is a PATCH of the charged resource, which must name the new
// plan's full price and is charged no more than that, its pro-rata part.
// Nothing else is ever charged. The orchestrator decides a charge by these
// rules and the adjudicator holds the evidence to them: a change here is a
// new ADJUDICATOR_VERSION.
import type { Money } from './schemas/money';

/** An `expected_price` as signed: whatever the agent's body held there. */
export type SignedPrice = { amount?: unknown; currency?: unknown } | null | undefined;

/** The JSON object an agent signed as a call's body; null when it is not one (which names no service, plan or price). */
export function signedObject(body: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(body);
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/** The charge a signed call is held to: where the provider serves its API, what was charged, and for which resource. */
type ChargedCall = { providerUrl: string; resourceRef: string | null | undefined; service: string; plan: string; charged: Money };

/**
 * Why a signed call (its method, target and parsed body) does not back `charge`; null when it does. A creation
 * names the service and plan; a plan change (§3.1 "Also") only the plan, and is charged the pro-rata part of the
 * difference, so never more than the new plan's full price ($0 for a downgrade, whose credit is a refund).
 */
export function signedCallMismatch(call: { method: string; target_uri: string }, signed: Record<string, unknown> | null, charge: ChargedCall): string | null {
  if (!signed) return 'the signed body is not a JSON object';
  const elsewhere = signedTargetMismatch(call, charge.providerUrl, charge.resourceRef);
  if (elsewhere) return elsewhere;
  if (call.method === 'POST' && signed.service !== charge.service) return `the agent asked for ${String(signed.service)}, not ${charge.service}`;
  if (signed.plan !== charge.plan) return `the agent asked for plan ${String(signed.plan)}, not ${charge.plan}`;
  // A creation's price absent (or null): the published price holds (the orchestrator checks it against the catalog).
  return signedPriceMismatch(call.method, signed.expected_price, charge.charged);
}

/**
 * Why a signed call is not a paid call at the provider served at `providerUrl`; null when it is. `resourceRef`
 * is the resource a plan change is charged for (undefined: not known, any one resource of the provider's).
 */
function signedTargetMismatch(call: { method: string; target_uri: string }, providerUrl: string, resourceRef: string | null | undefined): string | null {
  const resources = `${providerUrl}/v1/resources`;
  if (call.method === 'POST') return call.target_uri === resources ? null : 'the signed request is not a creation at this provider';
  if (call.method === 'PATCH') {
    const id = call.target_uri.startsWith(`${resources}/`) ? call.target_uri.slice(resources.length + 1) : null;
    const ofThisResource = resourceRef === undefined ? !!id && /^[^/?#]+$/.test(id) : !!resourceRef && id === resourceRef;
    return ofThisResource ? null : 'the signed plan change is of another resource';
  }
  return `a signed ${call.method} is neither a creation nor a plan change`;
}

/** Why `charged` is not what a signed `method` call naming `expected` agreed to; null when it is. */
function signedPriceMismatch(method: string, expected: unknown, charged: Money): string | null {
  const price = expected as SignedPrice;
  if (method === 'PATCH') {
    if (typeof price?.amount !== 'number' || price.currency !== charged.currency) return 'the signed plan change names no price in this currency';
    return charged.amount > price.amount ? 'the charge exceeds the full price the agent agreed to' : null;
  }
  return price == null || (price.amount === charged.amount && price.currency === charged.currency) ? null : 'the agent agreed to another price';
}
