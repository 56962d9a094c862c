// The audit event (PROTOCOL.md §4) and its hash chain. Pure functions only:
// the ledger object calls them inside transactionSync, so hashing is
// synchronous (node:crypto), never crypto.subtle.
import { z } from '@hono/zod-openapi';
import canonicalize from 'canonicalize';
import { createHash } from 'node:crypto';
import { MoneySchema } from './schemas/money';

export const GENESIS_HASH = '0'.repeat(64);

export const actorTypes = ['agent', 'principal', 'provider', 'orchestrator', 'system'] as const;
export const outcomes = ['succeeded', 'failed', 'refused'] as const;

export const AuditEventSchema = z
  .object({
    id: z.string().openapi({ example: 'evt_01J…' }),
    seq: z.number().int().positive(),
    time: z.string().datetime(),
    principal: z.string().openapi({ description: 'prn_… at the orchestrator, acct_… at a provider' }),
    actor: z.object({ type: z.enum(actorTypes), id: z.string() }),
    mandate_id: z.string().nullable(),
    action: z.string(),
    target: z.string().nullable(),
    outcome: z.enum(outcomes),
    reason: z.string().nullable(),
    amount: MoneySchema.nullable(),
    request_hash: z.string().nullable(),
    related: z.array(z.string()),
    prev_hash: z.string(),
    hash: z.string(),
  })
  .openapi('AuditEvent');

export type AuditEvent = z.infer<typeof AuditEventSchema>;

/** What a caller says about a state change; the ledger adds id, seq, time and the chain. */
export const AuditEntrySchema = AuditEventSchema.pick({ actor: true, action: true, outcome: true }).extend({
  mandate_id: z.string().nullable().optional(),
  target: z.string().nullable().optional(),
  reason: z.string().nullable().optional(),
  amount: MoneySchema.nullable().optional(),
  request_hash: z.string().nullable().optional(),
  related: z.array(z.string()).optional(),
});
export type AuditEntry = z.infer<typeof AuditEntrySchema>;

export function sha256Hex(data: string | Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** RFC 8785 (JCS) canonical JSON. */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError('value has no canonical JSON form');
  return text;
}

/** hash = sha256(prev_hash ‖ JCS(event without hash)), hex. */
export function auditEventHash(event: Omit<AuditEvent, 'hash'>): string {
  return sha256Hex(event.prev_hash + canonicalJson(event));
}

/** Whether an event's content is what its hash says (its link to the one before is the reader's to check). */
export function hashMatches(event: AuditEvent): boolean {
  const { hash, ...rest } = event;
  return auditEventHash(rest) === hash;
}

/**
 * An event as its state change's transaction records it: everything but its place in the hash
 * chain. The ledger chains it (`sealAuditEvent`) before it leaves the object, so that the hash is
 * computed off the request's path, in order, once per batch.
 */
export type RecordedAuditEvent = Omit<AuditEvent, 'prev_hash' | 'hash'>;

export function recordAuditEvent(entry: AuditEntry, position: { seq: number; principal: string; id: string; time: string }): RecordedAuditEvent {
  return {
    id: position.id,
    seq: position.seq,
    time: position.time,
    principal: position.principal,
    actor: entry.actor,
    mandate_id: entry.mandate_id ?? null,
    action: entry.action,
    target: entry.target ?? null,
    outcome: entry.outcome,
    reason: entry.reason ?? null,
    amount: entry.amount ?? null,
    request_hash: entry.request_hash ?? null,
    related: entry.related ?? [],
  };
}

/** Links a recorded event to the one before it. */
export function sealAuditEvent(event: RecordedAuditEvent, prev_hash: string): AuditEvent {
  const unhashed: Omit<AuditEvent, 'hash'> = { ...event, prev_hash };
  return { ...unhashed, hash: auditEventHash(unhashed) };
}

export function chainAuditEvent(
  entry: AuditEntry,
  position: { seq: number; prev_hash: string; principal: string; id: string; time: string },
): AuditEvent {
  return sealAuditEvent(recordAuditEvent(entry, position), position.prev_hash);
}

export type ChainVerdict = { ok: boolean; events: number; first_broken_seq: number | null };

/**
 * Walks a trail in seq order and names the first event that breaks the chain:
 * a gap in seq, a prev_hash that is not the previous hash, or a hash that does
 * not match the event's content. `head`, when given, is the chain head the
 * ledger holds: a trail that stops short of it lost its tail.
 */
export class AuditChainVerifier {
  #expectedSeq = 1;
  #prevHash = GENESIS_HASH;
  #events = 0;
  #broken: number | null = null;

  push(event: AuditEvent): void {
    this.#events++;
    if (this.#broken !== null) return;
    if (event.seq !== this.#expectedSeq || event.prev_hash !== this.#prevHash || !hashMatches(event)) {
      this.#broken = Math.min(event.seq, this.#expectedSeq);
      return;
    }
    this.#expectedSeq++;
    this.#prevHash = event.hash;
  }

  finish(head?: { seq: number; hash: string }): ChainVerdict {
    if (this.#broken === null && head && (head.seq !== this.#expectedSeq - 1 || (head.seq > 0 && head.hash !== this.#prevHash))) {
      // The stored trail ends before (or differently from) the head the ledger signed off.
      this.#broken = this.#expectedSeq;
    }
    return { ok: this.#broken === null, events: this.#events, first_broken_seq: this.#broken };
  }
}
