// Reading a trail: D1 holds the queryable copy, the ledger object holds the
// head and the events not yet copied. Readers merge both, so an export or a
// verification includes every event committed before the request, even while
// the copy to D1 lags. Pages keep memory constant whatever the trail's length.
import { AuditChainVerifier, type AuditEvent, type ChainVerdict } from './audit';
import { listAuditEvents, matchesAuditFilter, type AuditFilter } from './audit-store';

const PAGE = 500;

export type AuditSource = {
  auditSnapshot(afterSeq?: number): Promise<{ head: { seq: number; hash: string }; pending: AuditEvent[] }> | { head: { seq: number; hash: string }; pending: AuditEvent[] };
  signedHeads?(limit?: number): Promise<{ seq: number; hash: string }[]> | { seq: number; hash: string }[];
};

/** Every event of `principal` after `afterSeq` that matches `filter`, in seq order. */
export async function* auditEvents(
  ledger: AuditSource,
  db: D1Database,
  principal: string,
  afterSeq: number,
  filter: AuditFilter = {},
  snapshot?: Awaited<ReturnType<AuditSource['auditSnapshot']>>,
): AsyncGenerator<AuditEvent> {
  const { head, pending: all } = snapshot ?? (await ledger.auditSnapshot(afterSeq));
  const pending = all.filter((e) => e.seq > afterSeq && matchesAuditFilter(e, filter));
  let p = 0;
  let cursor = afterSeq;
  for (;;) {
    const page = await listAuditEvents(db, principal, { afterSeq: cursor, maxSeq: head.seq, limit: PAGE }, filter);
    for (const event of page) {
      while (p < pending.length && pending[p]!.seq < event.seq) yield pending[p++]!;
      if (p < pending.length && pending[p]!.seq === event.seq) p++; // copied since the snapshot: D1's copy is the stored trail
      yield event;
    }
    if (page.length < PAGE) break;
    cursor = page.at(-1)!.seq;
  }
  while (p < pending.length) yield pending[p++]!;
}

/** JSON Lines, pulled a page at a time. */
export function auditJsonLines(events: AsyncGenerator<AuditEvent>): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk = '';
      for (let i = 0; i < PAGE; i++) {
        const next = await events.next();
        if (next.done) {
          if (chunk) controller.enqueue(encoder.encode(chunk));
          controller.close();
          return;
        }
        chunk += JSON.stringify(next.value) + '\n';
      }
      controller.enqueue(encoder.encode(chunk));
    },
    async cancel() {
      await events.return(undefined);
    },
  });
}

/**
 * Recomputes the whole chain from the stored trail, checks it ends at the
 * ledger's head, and that it passes through the latest signed head.
 */
export async function verifyAuditTrail(ledger: AuditSource, db: D1Database, principal: string): Promise<ChainVerdict> {
  const snapshot = await ledger.auditSnapshot(0);
  const [signed] = (await ledger.signedHeads?.(1)) ?? [];
  const verifier = new AuditChainVerifier();
  let signedMismatch: number | null = null;
  for await (const event of auditEvents(ledger, db, principal, 0, {}, snapshot)) {
    verifier.push(event);
    if (signed && event.seq === signed.seq && event.hash !== signed.hash) signedMismatch = event.seq;
  }
  const verdict = verifier.finish(snapshot.head);
  if (signed && signed.seq > snapshot.head.seq) return { ...verdict, ok: false, first_broken_seq: Math.min(verdict.first_broken_seq ?? Infinity, snapshot.head.seq + 1) };
  if (signedMismatch !== null && (verdict.first_broken_seq === null || signedMismatch < verdict.first_broken_seq)) return { ...verdict, ok: false, first_broken_seq: signedMismatch };
  return verdict;
}
