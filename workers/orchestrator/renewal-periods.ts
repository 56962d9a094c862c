// When a recurring charge may be renewed (PROTOCOL.md §3.2: "at the period
// boundary"). A renewal rests on the charge it renews, not on a request the
// agent signed, so nothing the agent signed says when it is due. What the
// orchestrator knows for itself is when each charge was made: a period begins
// with its charge (a creation, or a renewal at a boundary), so the charge is
// not renewed before the shortest period its plan's billing can last has
// passed, or before the end the provider's receipt states (`period_end`) if
// that is later. A renewal chain so advances at most one period per renewal,
// whatever a provider states, and a provider that states an end is held to it.
import { decodeJwt } from 'jose';
import type { Hold } from '../../durable-objects/ledger/spend';

const DAY_MS = 24 * 60 * 60 * 1000;
/** How far ahead of ours a provider's clock may run: a renewal this early is on time. */
export const RENEWAL_CLOCK_SKEW_MS = 5 * 60 * 1000;

export type RecurringBilling = 'month' | 'year';

/** No month is shorter than 28 days and no year than 365: a day less allows for clocks and a boundary reached late. */
export const shortestPeriod = (billing: RecurringBilling) => (billing === 'year' ? 364 : 27) * DAY_MS;

/** A receipt's `period_end` as an instant; null when it is not an RFC 3339 date-time. */
export function periodEndOf(value: unknown): number | null {
  if (typeof value !== 'string' || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/.test(value)) return null;
  const at = Date.parse(value);
  return Number.isFinite(at) ? at : null;
}

/** The end of the period a charge paid for, as its receipt (verified when it was kept) states it; null if it states none. */
function statedPeriodEnd(hold: Pick<Hold, 'receipt'>): number | null {
  if (!hold.receipt) return null;
  try {
    return periodEndOf(decodeJwt(hold.receipt).period_end);
  } catch {
    return null;
  }
}

/**
 * From when a captured charge may be renewed: the shortest period of its billing after it was made, or the end its
 * receipt states if later. A plan change pays for the rest of a period that began before it, which only its receipt
 * says the end of; without one it is bounded by "a charge is renewed once" alone.
 */
export function renewableFrom(hold: Hold, billing: RecurringBilling): number | null {
  const stated = statedPeriodEnd(hold);
  const evidence = hold.evidence ? (JSON.parse(hold.evidence) as { agent_request?: { method?: string } }) : {};
  if (evidence.agent_request?.method === 'PATCH') return stated;
  return Math.max(stated ?? -Infinity, hold.created + shortestPeriod(billing));
}
