// When a recurring charge may be renewed, at the orchestrator (PROTOCOL.md
// §3.2: "at the period boundary"). A renewal rests on the charge it renews,
// not on a request the agent signed, so nothing the agent signed says when it
// is due. What the ledger knows for itself is when it made each charge: a
// period begins with its charge (a creation, or a renewal at a boundary), so
// the charge is not renewed before the shortest period its plan's billing can
// last has passed, nor before the end the provider's receipt states
// (`period_end`) if that is later. A plan change pays for the rest of the
// period in progress: it is renewed no sooner than the charge it changed
// would have been. A renewal chain so advances at most one period per
// renewal, whatever a provider states, and one that states an end is held to it.
import { decodeJwt } from 'jose';
import type { RecurringBilling } from '../../workers/lib/schemas/catalog';
import { DAY_MS } from '../../workers/lib/time';
import { evidenceOf, type Hold } from './spend';

/** How far ahead of ours a provider's clock may run: a renewal this early is on time. */
export const RENEWAL_CLOCK_SKEW_MS = 5 * 60 * 1000;

/** No month is shorter than 28 days and no year than 365: a day less allows for clocks and a boundary reached late. */
const shortestPeriod = (billing: RecurringBilling) => (billing === 'year' ? 364 : 27) * DAY_MS;

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

/** A plan change: the charge an agent's signed PATCH made. */
const isPlanChange = (hold: Pick<Hold, 'evidence'>) => evidenceOf(hold).agent_request?.method === 'PATCH';

/** Past this many plan changes back in one period, the oldest reached counts as where the period began. */
const PLAN_CHANGES_FOLLOWED = 12;

/**
 * From when a captured charge may be renewed: the shortest period of its billing after it was made, or the end its
 * receipt states if later. A plan change pays for the rest of a period begun by an earlier charge on the resource
 * (`before` reads the one before a charge): it is renewed no sooner than that charge would have been, nor than its
 * own receipt's end; with no such charge to be found, it is held to a whole period from when it was made.
 */
export function renewableFrom(hold: Hold, billing: RecurringBilling, before: (hold: Hold) => Hold | null): number {
  let floor = -Infinity;
  let charge = hold;
  for (let steps = 0; isPlanChange(charge); steps++) {
    floor = Math.max(floor, statedPeriodEnd(charge) ?? -Infinity);
    const earlier = steps < PLAN_CHANGES_FOLLOWED ? before(charge) : null;
    if (!earlier) return Math.max(floor, charge.created + shortestPeriod(billing));
    charge = earlier;
  }
  return Math.max(floor, statedPeriodEnd(charge) ?? -Infinity, charge.created + shortestPeriod(billing));
}
