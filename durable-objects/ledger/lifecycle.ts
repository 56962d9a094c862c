// A provisioned resource after its saga (PROTOCOL.md §3.1 "Also"): deleted,
// its credentials rotated. The ledger decides and audits; the service backend
// acts outside the transaction. A delete is owed to the backend through an
// outbox, so a crash or a backend fault between the two still ends with the
// resource gone: the alarm retries until the backend confirms.
import { DEPROVISIONS, type Owed } from './backend-outbox';
import { iso, refuse, type LedgerTx, type Outcome } from './context';
import { forgetCredentials, getResource, type Resource } from './sagas';

export type Actor = { type: 'agent' | 'principal' | 'system'; id: string };

/** The resource as its agent may act on it: its own, and not already gone. */
function ownLive(tx: LedgerTx, resourceId: string, actor: Actor): Outcome<{ resource: Resource }> {
  const resource = getResource(tx.sql, resourceId);
  if (!resource || resource.status === 'failed' || resource.status === 'deleted' || (actor.type === 'agent' && resource.agent_id !== actor.id)) {
    return refuse('not_found', 'No such resource.');
  }
  if (resource.status === 'provisioning') return refuse('conflict', 'The resource is still being provisioned.');
  return { ok: true, resource };
}

/**
 * DELETE: the resource is `deleted` from now on (reads say so, renewals stop)
 * and its backend is owed a deprovision. Idempotent: deleting a deleted
 * resource returns it unchanged, without a second event.
 */
export function beginDeprovision(tx: LedgerTx, resourceId: string, actor: Actor, servicesInScope?: string[]): Outcome<{ resource: Resource; already: boolean; event_id: string | null }> {
  const existing = getResource(tx.sql, resourceId);
  // The agent's own resource, but its token does not cover the service (the refusal's detail names it).
  const own = existing && (actor.type !== 'agent' || existing.agent_id === actor.id);
  if (own && servicesInScope && !servicesInScope.includes(existing.service)) return refuse('insufficient_scope', existing.service);
  if (existing?.status === 'deleted' && (actor.type !== 'agent' || existing.agent_id === actor.id)) return { ok: true, resource: existing, already: true, event_id: null };
  const live = ownLive(tx, resourceId, actor);
  if (!live.ok) return live;
  tx.sql.exec(`UPDATE resources SET status = 'deleted', renews_at = NULL, updated = ? WHERE id = ?`, iso(tx.now), resourceId);
  forgetCredentials(tx, resourceId);
  tx.sql.exec('INSERT OR IGNORE INTO deprovision_outbox (resource_id, service, attempts, next_attempt_at) VALUES (?, ?, 0, ?)', resourceId, live.resource.service, tx.now + 5_000);
  // The request itself calls the backend at once; the alarm is the safety net.
  tx.schedule(DEPROVISIONS.task, tx.now + 5_000);
  const event = tx.audit({ actor, action: 'resource.deprovision', mandate_id: live.resource.mandate_id, target: resourceId, outcome: 'succeeded', related: [`${live.resource.service}/${live.resource.plan}`, ...(live.resource.renews_at ? ['billing_stopped'] : [])] });
  return { ok: true, resource: getResource(tx.sql, resourceId)!, already: false, event_id: event.id };
}

/** A delete owed to the backend (backend-outbox.ts): the row names its service, since the resource is gone. */
export type OwedDeprovision = Owed & { service: string };

/** Rotation is allowed on the agent's own live resource; the backend makes the new credentials. */
export function checkRotatable(tx: LedgerTx, resourceId: string, actor: Actor): Outcome<{ resource: Resource }> {
  const live = ownLive(tx, resourceId, actor);
  if (!live.ok) return live;
  if (live.resource.status !== 'active') return refuse('conflict', `The resource is ${live.resource.status}.`);
  return live;
}

/** The backend rotated: the new service fields, and an event that names no credential. */
export function recordRotation(tx: LedgerTx, resourceId: string, fields: string, actor: Actor): { resource: Resource; event_id: string } | null {
  const resource = getResource(tx.sql, resourceId);
  // Suspended meanwhile (a declined renewal) it keeps its data, so the rotation stands; only a deleted one is undone.
  if (!resource || (resource.status !== 'active' && resource.status !== 'suspended')) return null;
  tx.sql.exec('UPDATE resources SET fields = ?, updated = ? WHERE id = ?', fields, iso(tx.now), resourceId);
  // Credentials still waiting for an operation's read died with the rotation.
  forgetCredentials(tx, resourceId);
  const event = tx.audit({ actor, action: 'resource.rotate', mandate_id: resource.mandate_id, target: resourceId, outcome: 'succeeded', related: [`${resource.service}/${resource.plan}`] });
  return { resource: getResource(tx.sql, resourceId)!, event_id: event.id };
}
