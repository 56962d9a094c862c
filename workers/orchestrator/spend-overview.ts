// This period's money as the principal's dashboard shows it: every limit with
// what is spent against it (the ledger's own summary, PROTOCOL.md §3.2), and
// the same spend split by provider and by agent, from the period's charges.
import type { Hold } from '../../durable-objects/ledger/spend';
import type { Money } from '../lib/schemas/money';
import { ledgerOf, type OrchestratorBindings } from './env';

export type LimitRow = { scope: 'principal' | 'mandate'; id: string | null; limit: Money; spent: Money; period: string };
export type SpendShare = { key: string; spent: Money; charges: number };
export type SpendOverview = { period: string; limits: LimitRow[]; monthly: LimitRow; byProvider: SpendShare[]; byAgent: SpendShare[] };

/** Charges that count against limits: authorized holds and captured ones. Voided and refunded charges gave their money back. */
const COUNTED = new Set<Hold['status']>(['pending', 'captured']);

function shares(holds: Hold[], keyOf: (h: Hold) => string | null, currency: string): SpendShare[] {
  const totals = new Map<string, SpendShare>();
  for (const hold of holds) {
    const key = keyOf(hold);
    if (key === null) continue;
    const share = totals.get(key) ?? { key, spent: { amount: 0, currency }, charges: 0 };
    share.spent.amount += hold.amount;
    share.charges += 1;
    totals.set(key, share);
  }
  return [...totals.values()].sort((a, b) => b.spent.amount - a.spent.amount || a.key.localeCompare(b.key));
}

export async function spendOverview(env: OrchestratorBindings, principalId: string): Promise<SpendOverview> {
  const ledger = ledgerOf(env, principalId);
  const limits = (await ledger.limitsSummary()) as LimitRow[];
  // limitsSummary always opens with the principal's own monthly limit.
  const monthly = limits.find((l) => l.scope === 'principal')!;
  const holds = ((await ledger.listCharges({ period: monthly.period })) as Hold[]).filter((h) => COUNTED.has(h.status));
  return {
    period: monthly.period,
    limits,
    monthly,
    byProvider: shares(holds, (h) => h.provider, monthly.limit.currency),
    byAgent: shares(holds, (h) => h.agent_id, monthly.limit.currency),
  };
}
