// The price an agent's signed paid call agrees to (PROTOCOL.md §3.1): a
// creation is charged exactly the `expected_price` it names (none named, the
// provider's published price holds, which the orchestrator reads from the
// catalog); a plan change must name the new plan's full price and is charged
// no more than that, its pro-rata part. The orchestrator decides a charge by
// this rule and the adjudicator holds the evidence to it: a change here is a
// new ADJUDICATOR_VERSION.
import type { Money } from './schemas/money';

type SignedPrice = { amount?: unknown; currency?: unknown } | null | undefined;

/** Why `charged` is not what a signed `method` call naming `expected` agreed to; null when it is. */
export function signedPriceMismatch(method: string, expected: unknown, charged: Money): string | null {
  const price = expected as SignedPrice;
  if (method === 'PATCH') {
    if (typeof price?.amount !== 'number' || price.currency !== charged.currency) return 'the signed plan change names no price in this currency';
    return charged.amount > price.amount ? 'the charge exceeds the full price the agent agreed to' : null;
  }
  return price == null || (price.amount === charged.amount && price.currency === charged.currency) ? null : 'the agent agreed to another price';
}
