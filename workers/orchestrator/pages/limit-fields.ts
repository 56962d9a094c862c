// The limits a human types on the approval page, in its two forms (lowering a
// request's limits, raising an active mandate's): amounts in the major unit of
// the mandate's currency, which the page names in a hidden field.
import { ProblemError } from '../../lib/problem';
import { minorUnitsOf, unitName } from '../../lib/pages/format';
import type { Money } from '../../lib/schemas/money';

/**
 * `spend_limit` and each `max_per_charge_<provider>` typed in `currency` (usd unless the form names another; the
 * terms' checks refuse any but the mandate's), in minor units; an empty field names no limit. An amount that is not
 * one is 422.
 */
export function typedLimits(form: Record<string, unknown>): { spend_limit?: Money; max_per_charge: Record<string, Money> } {
  const currency = typeof form.currency === 'string' && /^[a-z]{3}$/.test(form.currency) ? form.currency : 'usd';
  const amount = (field: string): Money | undefined => {
    const value = form[field];
    if (typeof value !== 'string' || value.trim() === '') return undefined;
    const minor = minorUnitsOf(value, currency);
    if (minor === null) throw new ProblemError(422, 'invalid_request', `${field} must be an amount in ${unitName(currency)}.`);
    return { amount: minor, currency };
  };
  const spend = amount('spend_limit');
  const max_per_charge: Record<string, Money> = {};
  for (const field of Object.keys(form)) {
    const provider = /^max_per_charge_([a-z0-9-]+)$/.exec(field)?.[1];
    const limit = provider ? amount(field) : undefined;
    if (provider && limit) max_per_charge[provider] = limit;
  }
  return { ...(spend ? { spend_limit: spend } : {}), max_per_charge };
}
