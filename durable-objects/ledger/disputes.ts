// Disputes at the orchestrator (PROTOCOL.md §5): the verdict is recorded with
// every finding; a charge found outside scope, or without enough evidence, is
// reversed in the same transaction (refund, spend freed), the provider is told
// by a signed event and the human by a notification and a webhook.
import { iso, refuse, type LedgerTx, type Outcome } from './context';
import { queueProviderEvent } from './mandates';
import { getHold, notifyOnce, refundHold } from './spend';

export type DisputeRecord = {
  id: string;
  charge_id: string;
  reason: string;
  verdict: string;
  failing_party: string | null;
  findings: string;
  adjudicator: string;
  /** The evidence bundle the verdict was decided on, exactly as decided. */
  evidence: string;
  created: string;
};

export function getDispute(sql: SqlStorage, id: string): DisputeRecord | null {
  return sql.exec<DisputeRecord>('SELECT * FROM disputes WHERE id = ?', id).toArray()[0] ?? null;
}

/** A dispute as listed: everything but its evidence bundle, which is read on its own (by id). */
export type DisputeSummary = Omit<DisputeRecord, 'evidence'>;

/** The principal's disputes, newest first. */
export function listDisputes(sql: SqlStorage): DisputeSummary[] {
  return sql.exec<DisputeSummary>('SELECT id, charge_id, reason, verdict, failing_party, findings, adjudicator, created FROM disputes ORDER BY created DESC, rowid DESC').toArray();
}

export function disputeOfCharge(sql: SqlStorage, chargeId: string): DisputeRecord | null {
  return sql.exec<DisputeRecord>('SELECT * FROM disputes WHERE charge_id = ?', chargeId).toArray()[0] ?? null;
}

export function recordDispute(tx: LedgerTx, principal: string, dispute: Omit<DisputeRecord, 'created'>): Outcome<{ dispute: DisputeRecord }> {
  const actor = { type: 'principal' as const, id: principal };
  const hold = getHold(tx.sql, dispute.charge_id);
  // §4: a refusal is an event too, committed with nothing else.
  const refused = (code: string, detail: string) => {
    tx.audit({ actor, action: 'dispute.open', mandate_id: hold?.mandate_id ?? null, outcome: 'refused', reason: code, related: [dispute.charge_id] });
    return refuse(code, detail);
  };
  if (!hold) return refused('not_found', 'No such charge.');
  if (disputeOfCharge(tx.sql, dispute.charge_id)) return refused('invalid_request', 'This charge has been disputed already.');
  if (hold.status !== 'captured') return refused('invalid_request', `Only a captured charge can be disputed; this one is ${hold.status === 'pending' ? 'authorized' : hold.status}.`);
  tx.sql.exec(
    'INSERT INTO disputes (id, charge_id, reason, verdict, failing_party, findings, adjudicator, evidence, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
    dispute.id,
    dispute.charge_id,
    dispute.reason,
    dispute.verdict,
    dispute.failing_party,
    dispute.findings,
    dispute.adjudicator,
    dispute.evidence,
    iso(tx.now),
  );
  tx.audit({ actor, action: 'dispute.open', mandate_id: hold.mandate_id, target: dispute.id, outcome: 'succeeded', related: [dispute.charge_id] });
  tx.audit({
    actor: { type: 'orchestrator', id: dispute.adjudicator },
    action: 'dispute.decide',
    mandate_id: hold.mandate_id,
    target: dispute.id,
    outcome: 'succeeded',
    reason: dispute.verdict,
    amount: { amount: hold.amount, currency: hold.currency },
    related: [dispute.charge_id, ...(dispute.failing_party ? [dispute.failing_party] : [])],
  });
  if (dispute.verdict !== 'within_scope') {
    refundHold(tx, dispute.charge_id, { type: 'orchestrator', id: dispute.adjudicator }, `dispute:${dispute.verdict}`);
    if (hold.provider) queueProviderEvent(tx, hold.provider, 'charge.refunded', { charge_id: dispute.charge_id, dispute_id: dispute.id, verdict: dispute.verdict });
  }
  const data = { dispute_id: dispute.id, charge_id: dispute.charge_id, verdict: dispute.verdict, failing_party: dispute.failing_party };
  notifyOnce(tx, `ntf_${dispute.id.slice(4)}`, 'dispute.decided', data);
  return { ok: true, dispute: getDispute(tx.sql, dispute.id)! };
}
