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

type SignedPrice = { amount?: unknown; currency?: unknown } | null | undefined;

/**
 * Why a signed call is not a paid call at the provider served at `providerUrl`; null when it is. `resourceRef`
 * is the resource a plan change is charged for (undefined: not known, any one resource of the provider's).
 */
export function signedTargetMismatch(call: { method: string; target_uri: string }, providerUrl: string, resourceRef: string | null | undefined): string | null {
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
export function signedPriceMismatch(method: string, expected: unknown, charged: Money): string | null {
  const price = expected as SignedPrice;
  if (method === 'PATCH') {
    if (typeof price?.amount !== 'number' || price.currency !== charged.currency) return 'the signed plan change names no price in this currency';
    return charged.amount > price.amount ? 'the charge exceeds the full price the agent agreed to' : null;
  }
  return price == null || (price.amount === charged.amount && price.currency === charged.currency) ? null : 'the agent agreed to another price';
}
