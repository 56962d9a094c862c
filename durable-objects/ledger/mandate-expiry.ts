// A mandate ends at its expires_at (a year at most), and nothing bought under
// its chain renews after that: the renewal is declined `mandate_inactive` and
// the resource suspended for good, since a mandate that has ended can no
// longer be superseded. So the human hears beforehand, once per mandate, of
// the recurring plans its chain pays for, while the agent can still ask for a
// successor (`supersedes`) for the human to approve.
import type { LedgerTx } from './context';
import type { MandateTerms } from './mandates';
import { DAY_MS } from '../../workers/lib/time';
import { evidenceOf, notifyOnce, type Hold } from './spend';

/** How long before a mandate ends the human is told of what will not renew. */
const EXPIRY_NOTICE_MS = 14 * DAY_MS;
/**
 * How recently a resource's latest charge was made if it still renews: a period of its billing and a little (a renewal
 * comes once a period, tried again for up to 30 days while suspended); one charged before that is gone.
 */
const STILL_RENEWING_MS = { month: 40 * DAY_MS, year: 370 * DAY_MS } as const;

type ExpiringResource = { provider: string; service: string; plan: string; resource_ref: string };

const isRecurring = (billing: unknown): billing is 'month' | 'year' => billing === 'month' || billing === 'year';

/** The notice for a mandate is due this long before it ends (now, if that is past). */
export function scheduleExpiryNotice(tx: LedgerTx, expiresAt: string) {
  tx.schedule('mandate_expiry', Math.max(tx.now, Date.parse(expiresAt) - EXPIRY_NOTICE_MS));
}

/** A recurring plan now paid for, under a mandate that may end before it renews: the notice is looked at again. */
export function noticeAfterCapture(tx: LedgerTx, hold: Hold) {
  if (isRecurring(evidenceOf(hold).billing)) tx.schedule('mandate_expiry', tx.now);
}

/**
 * The recurring plans a mandate chain pays for that still renew: resources whose latest charge (voided tries aside) is
 * captured or about to be, of a plan billed monthly or yearly, and recent enough. One whose latest charge was refunded
 * (a dispute) cannot be renewed, nor one whose billing is not known.
 */
function recurringResources(tx: LedgerTx, root: string): ExpiringResource[] {
  return tx.sql
    .exec<ExpiringResource & { status: string; billing: string | null; last: number }>(
      `SELECT provider, service, plan, resource_ref, status, json_extract(evidence, '$.billing') AS billing, MAX(created) AS last FROM holds
       WHERE COALESCE(mandate_root, mandate_id) = ? AND resource_ref IS NOT NULL AND status != 'voided'
       GROUP BY provider, resource_ref ORDER BY last`,
      root,
    )
    .toArray()
    .filter((r) => (r.status === 'captured' || r.status === 'pending') && isRecurring(r.billing) && r.last >= tx.now - STILL_RENEWING_MS[r.billing])
    .map(({ provider, service, plan, resource_ref }) => ({ provider, service, plan, resource_ref }));
}

/**
 * Tells the human of every active mandate ending within the notice period whose chain pays for recurring plans:
 * a `mandate.expiring` notification (and webhook) naming them, and an audit event; once per mandate. Returns when
 * the next notice is due, or null.
 */
export function noticeExpiringMandates(tx: LedgerTx): number | null {
  const active = tx.sql
    .exec<{ id: string; root: string; approved: string }>(`SELECT id, COALESCE(root, id) AS root, approved FROM mandates WHERE status = 'active' AND approved IS NOT NULL`)
    .toArray();
  let next: number | null = null;
  for (const mandate of active) {
    const expiresAt = (JSON.parse(mandate.approved) as MandateTerms).expires_at;
    const ends = Date.parse(expiresAt);
    if (ends <= tx.now) continue;
    if (ends - EXPIRY_NOTICE_MS > tx.now) {
      next = Math.min(next ?? Infinity, ends - EXPIRY_NOTICE_MS);
      continue;
    }
    // Told already: no scan of its chain's charges.
    const id = `ntf_expiring_${mandate.id.slice(4)}`;
    if (tx.sql.exec('SELECT 1 FROM notifications WHERE id = ?', id).toArray().length > 0) continue;
    const resources = recurringResources(tx, mandate.root);
    if (resources.length === 0) continue;
    notifyOnce(tx, id, 'mandate.expiring', { mandate_id: mandate.id, expires_at: expiresAt, resources });
    tx.audit({
      actor: { type: 'system', id: 'mandate-expiry' },
      action: 'mandate.expiring',
      mandate_id: mandate.id,
      target: mandate.id,
      outcome: 'succeeded',
      related: resources.map((r) => r.resource_ref),
    });
  }
  return next;
}
