// D1 queries for the audit_events table (d1-migrations/*/0001_audit_events.sql).
import type { AuditEvent } from './audit';

export type AuditFilter = {
  actorId?: string;
  mandateId?: string;
  action?: string;
  outcome?: string;
  since?: string;
  until?: string;
};

type AuditRow = {
  principal: string;
  seq: number;
  id: string;
  time: string;
  actor_type: AuditEvent['actor']['type'];
  actor_id: string;
  mandate_id: string | null;
  action: string;
  target: string | null;
  outcome: AuditEvent['outcome'];
  reason: string | null;
  amount: number | null;
  currency: string | null;
  request_hash: string | null;
  related: string;
  prev_hash: string;
  hash: string;
};

/** Rebuilds the event from its columns alone, so an edit to any column shows in verification. */
export function auditEventFromRow(row: AuditRow): AuditEvent {
  return {
    id: row.id,
    seq: row.seq,
    time: row.time,
    principal: row.principal,
    actor: { type: row.actor_type, id: row.actor_id },
    mandate_id: row.mandate_id,
    action: row.action,
    target: row.target,
    outcome: row.outcome,
    reason: row.reason,
    amount: row.amount === null || row.currency === null ? null : { amount: row.amount, currency: row.currency },
    request_hash: row.request_hash,
    related: relatedOfRow(row.related),
    prev_hash: row.prev_hash,
    hash: row.hash,
  };
}

/**
 * `related` is stored as a JSON array of strings. Anything else was edited outside the ledger: it is
 * read as the array of its text, so the trail still reads to its end (an export does not die there)
 * and the event no longer matches its hash, which is where verification, ours or anyone's over the
 * export, names the break.
 */
function relatedOfRow(stored: unknown): string[] {
  try {
    const related: unknown = JSON.parse(String(stored));
    if (Array.isArray(related) && related.every((r) => typeof r === 'string')) return related;
  } catch {
    // Not JSON: read as text, below.
  }
  return [String(stored)];
}

/**
 * A `since`/`until` bound in the form times are stored in (toISOString: UTC, milliseconds), so that
 * comparing the strings compares the instants: as text, `…02Z` sorts after `…02.008Z`. A bound finer
 * than a millisecond is rounded up, which keeps `time >= bound` and `time < bound` exact for stored times.
 */
function storedTimeBound(rfc3339: string): string {
  const ms = Date.parse(rfc3339);
  const belowMs = /\.\d{3}(\d+)/.exec(rfc3339)?.[1] ?? '';
  return new Date(/[1-9]/.test(belowMs) ? ms + 1 : ms).toISOString();
}

/** Idempotent: the ledger's alarm may copy the same event more than once. */
export async function insertAuditEvents(db: D1Database, events: AuditEvent[]): Promise<void> {
  if (events.length === 0) return;
  const insert = db.prepare(
    `INSERT OR IGNORE INTO audit_events
       (principal, seq, id, time, actor_type, actor_id, mandate_id, action, target, outcome, reason,
        amount, currency, request_hash, related, prev_hash, hash)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)`,
  );
  await db.batch(
    events.map((e) =>
      insert.bind(
        e.principal,
        e.seq,
        e.id,
        e.time,
        e.actor.type,
        e.actor.id,
        e.mandate_id,
        e.action,
        e.target,
        e.outcome,
        e.reason,
        e.amount?.amount ?? null,
        e.amount?.currency ?? null,
        e.request_hash,
        JSON.stringify(e.related),
        e.prev_hash,
        e.hash,
      ),
    ),
  );
}

/** One page of a principal's trail in seq order, after `afterSeq` and up to `maxSeq`. */
export async function listAuditEvents(
  db: D1Database,
  principal: string,
  page: { afterSeq: number; maxSeq: number; limit: number },
  filter: AuditFilter = {},
): Promise<AuditEvent[]> {
  const clauses = ['principal = ?1', 'seq > ?2', 'seq <= ?3'];
  const binds: unknown[] = [principal, page.afterSeq, page.maxSeq];
  const add = (clause: string, value: unknown) => {
    binds.push(value);
    clauses.push(clause.replace('?', `?${binds.length}`));
  };
  if (filter.actorId !== undefined) add('actor_id = ?', filter.actorId);
  if (filter.mandateId !== undefined) add('mandate_id = ?', filter.mandateId);
  if (filter.action !== undefined) add('action = ?', filter.action);
  if (filter.outcome !== undefined) add('outcome = ?', filter.outcome);
  if (filter.since !== undefined) add('time >= ?', storedTimeBound(filter.since));
  if (filter.until !== undefined) add('time < ?', storedTimeBound(filter.until));
  binds.push(page.limit);
  const { results } = await db
    .prepare(`SELECT * FROM audit_events WHERE ${clauses.join(' AND ')} ORDER BY seq LIMIT ?${binds.length}`)
    .bind(...binds)
    .all<AuditRow>();
  return results.map(auditEventFromRow);
}

export function matchesAuditFilter(event: AuditEvent, filter: AuditFilter): boolean {
  return (
    (filter.actorId === undefined || event.actor.id === filter.actorId) &&
    (filter.mandateId === undefined || event.mandate_id === filter.mandateId) &&
    (filter.action === undefined || event.action === filter.action) &&
    (filter.outcome === undefined || event.outcome === filter.outcome) &&
    (filter.since === undefined || event.time >= storedTimeBound(filter.since)) &&
    (filter.until === undefined || event.time < storedTimeBound(filter.until))
  );
}

export type SignedHeadRow = { principal: string; seq: number; hash: string; time: string; jws: string };

export async function insertSignedHead(db: D1Database, head: SignedHeadRow): Promise<void> {
  await db
    .prepare('INSERT OR IGNORE INTO audit_heads (principal, seq, hash, time, jws) VALUES (?1, ?2, ?3, ?4, ?5)')
    .bind(head.principal, head.seq, head.hash, head.time, head.jws)
    .run();
}
