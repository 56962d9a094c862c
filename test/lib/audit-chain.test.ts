// The audit trail core: a per-principal hash chain written by the ledger
// object, copied to D1 by alarm, read back merged and verified.
import { evictDurableObject, runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { AuditChainVerifier, chainAuditEvent, GENESIS_HASH, type AuditEntry, type AuditEvent } from '../../workers/lib/audit';
import { insertAuditEvents, type AuditFilter } from '../../workers/lib/audit-store';
import { auditEvents, auditJsonLines, verifyAuditTrail } from '../../workers/lib/audit-trail';
import { newId } from '../../workers/lib/ids';

const testEnv = env as unknown as TestEnv;
const freshPrincipal = () => newId('acct');
const ledgerOf = (principal: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(principal));

const entry = (i: number, extra: Partial<AuditEntry> = {}): AuditEntry => ({
  actor: { type: 'agent', id: i % 2 ? 'agt_odd' : 'agt_even' },
  action: 'resource.provision',
  outcome: i % 3 ? 'succeeded' : 'refused',
  target: `res_${i}`,
  ...extra,
});

async function collect(iterable: AsyncIterable<AuditEvent>) {
  const out: AuditEvent[] = [];
  for await (const e of iterable) out.push(e);
  return out;
}

describe('audit chain (pure)', () => {
  it('links each event to the previous hash from the genesis hash, and verifies', () => {
    let prev = GENESIS_HASH;
    const verifier = new AuditChainVerifier();
    for (let seq = 1; seq <= 5; seq++) {
      const e = chainAuditEvent(entry(seq), { seq, prev_hash: prev, principal: 'acct_x', id: `evt_${seq}`, time: new Date(0).toISOString() });
      expect(e.prev_hash).toBe(prev);
      expect(e.hash).toMatch(/^[0-9a-f]{64}$/);
      prev = e.hash;
      verifier.push(e);
    }
    expect(verifier.finish({ seq: 5, hash: prev })).toEqual({ ok: true, events: 5, first_broken_seq: null });
  });

  it('names the first tampered seq whatever field of whichever event is changed (property)', () => {
    const chain: AuditEvent[] = [];
    let prev = GENESIS_HASH;
    for (let seq = 1; seq <= 20; seq++) {
      const e = chainAuditEvent(entry(seq, { amount: { amount: seq * 100, currency: 'usd' }, related: [`chg_${seq}`] }), {
        seq,
        prev_hash: prev,
        principal: 'prn_p',
        id: `evt_${seq}`,
        time: new Date(seq * 1000).toISOString(),
      });
      chain.push(e);
      prev = e.hash;
    }
    const fields = ['time', 'action', 'target', 'outcome', 'reason', 'amount', 'actor', 'related', 'mandate_id'] as const;
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 19 }), fc.constantFrom(...fields), fc.string({ minLength: 1 }), (index, field, noise) => {
        const tampered = chain.map((e) => structuredClone(e));
        const victim = tampered[index]! as unknown as Record<string, unknown>;
        victim[field] =
          field === 'amount' ? { amount: 1, currency: 'usd' } : field === 'actor' ? { type: 'principal', id: noise } : field === 'related' ? [noise] : `${String(victim[field])}${noise}`;
        const verifier = new AuditChainVerifier();
        tampered.forEach((e) => verifier.push(e));
        expect(verifier.finish({ seq: 20, hash: prev }).first_broken_seq).toBe(index + 1);
      }),
    );
  });
});

describe('principal ledger audit trail', () => {
  it('assigns dense seqs under 100 concurrent appends and keeps one valid chain', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    const events = await Promise.all(Array.from({ length: 100 }, (_, i) => ledger.appendAuditEvent(principal, entry(i))));
    expect(events.map((e) => e.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toEqual({ ok: true, events: 100, first_broken_seq: null });
  });

  it('copies the outbox to D1 by alarm, in order, and empties it', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvents(principal, [entry(1), entry(2), entry(3)]);
    // The append armed the alarm (the copy batches events for AUDIT_COPY_DELAY_MS); nothing else copies.
    await vi.waitFor(async () => expect((await ledger.auditSnapshot()).pending).toHaveLength(0), { timeout: 10_000, interval: 100 });
    const rows = await testEnv.DB.prepare('SELECT seq FROM audit_events WHERE principal = ?1 ORDER BY seq').bind(principal).all<{ seq: number }>();
    expect(rows.results.map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  it('loses no event while D1 refuses writes: the alarm retries until D1 has them', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    const failedAttempts = () =>
      runInDurableObject(ledger, (_, state) => Number(state.storage.sql.exec<{ value: string }>(`SELECT value FROM meta WHERE key = 'retry:audit_outbox'`).toArray()[0]?.value ?? 0));
    await testEnv.DB.exec('CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, "d1 down"); END');
    try {
      await ledger.appendAuditEvents(principal, [entry(1), entry(2)]);
      await vi.waitFor(async () => expect(await failedAttempts()).toBeGreaterThanOrEqual(1), { timeout: 10_000, interval: 100 });
      expect((await ledger.auditSnapshot()).pending).toHaveLength(2);
      // A reader still sees both events, from the object, while D1 lags.
      expect((await collect(auditEvents(ledger, testEnv.DB, principal, 0))).map((e) => e.seq)).toEqual([1, 2]);
    } finally {
      await testEnv.DB.exec('DROP TRIGGER refuse_audit');
    }
    await vi.waitFor(async () => expect((await ledger.auditSnapshot()).pending).toHaveLength(0), { timeout: 10_000, interval: 200 });
    expect(await failedAttempts()).toBe(0);
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toMatchObject({ ok: true, events: 2 });
  });

  it('continues the same chain after the object is evicted from memory', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvents(principal, [entry(1), entry(2)]);
    await evictDurableObject(ledger);
    const third = await ledger.appendAuditEvent(principal, entry(3));
    expect(third.seq).toBe(3);
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toMatchObject({ ok: true, events: 3 });
  });

  it('records an event with its state change and chains it before anyone reads it: the head moves only then', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvents(principal, [entry(1), entry(2)]);
    await ledger.appendAuditEvent(principal, entry(3));
    const stored = () =>
      runInDurableObject(ledger, (_, state) => ({
        head: state.storage.sql.exec<{ seq: number }>('SELECT seq FROM audit_head').one().seq,
        events: state.storage.sql.exec<{ event: string }>('SELECT event FROM audit_outbox ORDER BY seq').toArray().map((r) => JSON.parse(r.event) as Partial<AuditEvent>),
      }));
    const recorded = await stored();
    expect(recorded.head).toBe(0);
    expect(recorded.events.map((e) => [e.seq, e.hash])).toEqual([[1, undefined], [2, undefined], [3, undefined]]);

    const head = await ledger.auditHead();
    const sealed = await stored();
    expect(sealed.head).toBe(3);
    expect(head).toMatchObject({ principal, seq: 3, hash: sealed.events[2]!.hash });
    const verifier = new AuditChainVerifier();
    sealed.events.forEach((e) => verifier.push(e as AuditEvent));
    expect(verifier.finish(head)).toEqual({ ok: true, events: 3, first_broken_seq: null });
    // The next event takes the next seq whether or not the ones before it were chained yet.
    expect((await ledger.appendAuditEvent(principal, entry(4))).seq).toBe(4);
  });

  it('keeps one chain whatever interleaving of recording, reading the head and copying to D1 (property)', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.constantFrom('record', 'record3', 'head', 'flush'), { minLength: 4, maxLength: 14 }), async (steps) => {
        const principal = freshPrincipal();
        const ledger = ledgerOf(principal);
        let expected = 0;
        // All at once: a copy to D1 awaits D1, and what is recorded meanwhile must wait to be chained.
        await Promise.all(
          steps.map((step) => {
            if (step === 'head') return ledger.auditHead();
            if (step === 'flush') return ledger.flushAuditOutbox();
            const batch = step === 'record' ? [entry(expected + 1)] : [entry(expected + 1), entry(expected + 2), entry(expected + 3)];
            expected += batch.length;
            return ledger.appendAuditEvents(principal, batch);
          }),
        );
        expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toEqual({ ok: true, events: expected, first_broken_seq: null });
        await ledger.flushAuditOutbox();
        const copied = await testEnv.DB.prepare('SELECT seq FROM audit_events WHERE principal = ?1 ORDER BY seq').bind(principal).all<{ seq: number }>();
        expect(copied.results.map((r) => r.seq)).toEqual(Array.from({ length: expected }, (_, i) => i + 1));
        expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toEqual({ ok: true, events: expected, first_broken_seq: null });
      }),
      { numRuns: 15 },
    );
  });

  it('refuses to record events of another principal in a ledger', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvent(principal, entry(1));
    await runInDurableObject(ledger, (instance) => {
      expect(() => instance.appendAuditEvent('acct_someone_else', entry(2))).toThrow(/asked to record/);
    });
    expect((await ledger.auditHead()).seq).toBe(1);
  });

  it('exports merged from D1 and the outbox, filtered by actor, outcome and after', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvents(principal, Array.from({ length: 6 }, (_, i) => entry(i + 1)));
    await ledger.flushAuditOutbox();
    await ledger.appendAuditEvents(principal, Array.from({ length: 6 }, (_, i) => entry(i + 7)));
    const all = await collect(auditEvents(ledger, testEnv.DB, principal, 0));
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const odd = await collect(auditEvents(ledger, testEnv.DB, principal, 0, { actorId: 'agt_odd' }));
    expect(odd.map((e) => e.seq)).toEqual([1, 3, 5, 7, 9, 11]);
    const refusedAfter4 = await collect(auditEvents(ledger, testEnv.DB, principal, 4, { outcome: 'refused' }));
    expect(refusedAfter4.map((e) => e.seq)).toEqual([6, 9, 12]);
  });

  it('verifies a 10,000-event trail, then names the seq of a row edited in D1', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    for (let batch = 0; batch < 10; batch++) {
      await ledger.appendAuditEvents(principal, Array.from({ length: 1000 }, (_, i) => entry(batch * 1000 + i)));
    }
    await ledger.flushAuditOutbox();
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toEqual({ ok: true, events: 10_000, first_broken_seq: null });

    await testEnv.DB.prepare(`UPDATE audit_events SET outcome = CASE outcome WHEN 'succeeded' THEN 'refused' ELSE 'succeeded' END WHERE principal = ?1 AND seq = 7341`).bind(principal).run();
    await testEnv.DB.prepare(`UPDATE audit_events SET target = 'res_other' WHERE principal = ?1 AND seq = 7342`).bind(principal).run();
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toEqual({ ok: false, events: 10_000, first_broken_seq: 7341 });
  }, 60_000);

  it('detects a deleted row, and a deleted tail against the head the object holds', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvents(principal, Array.from({ length: 10 }, (_, i) => entry(i)));
    await ledger.flushAuditOutbox();
    await testEnv.DB.prepare('DELETE FROM audit_events WHERE principal = ?1 AND seq >= 9').bind(principal).run();
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toEqual({ ok: false, events: 8, first_broken_seq: 9 });
    await testEnv.DB.prepare('DELETE FROM audit_events WHERE principal = ?1 AND seq = 4').bind(principal).run();
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toMatchObject({ ok: false, first_broken_seq: 4 });
  });
});

describe('a D1 row edited into something unreadable', () => {
  async function trailWithRelated(length: number) {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvents(principal, Array.from({ length }, (_, i) => entry(i + 1, { related: [`chg_${i + 1}`] })));
    await ledger.flushAuditOutbox();
    return { principal, ledger };
  }
  const editRelated = (principal: string, seq: number, related: unknown) =>
    testEnv.DB.prepare('UPDATE audit_events SET related = ?1 WHERE principal = ?2 AND seq = ?3').bind(related, principal, seq).run();

  it('verifies as a chain broken at that row (related = not JSON, not an array, not strings), never as an error', async () => {
    for (const related of ['not json', '{"chg":1}', '[1,2]', 42]) {
      const { principal, ledger } = await trailWithRelated(5);
      await editRelated(principal, 3, related);
      expect(await verifyAuditTrail(ledger, testEnv.DB, principal), String(related)).toEqual({ ok: false, events: 5, first_broken_seq: 3 });
    }
  });

  it('exports every row, the edited one among them, so that recomputing the export finds the break verify names', async () => {
    const { principal, ledger } = await trailWithRelated(5);
    await editRelated(principal, 3, 'not json');
    const text = await new Response(auditJsonLines(auditEvents(ledger, testEnv.DB, principal, 0))).text();
    const lines = text.trim().split('\n').map((line) => JSON.parse(line) as AuditEvent);
    expect(lines.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    // Still an AuditEvent (related an array of strings), carrying the stored text, under the hash of the original.
    expect(lines[2]!.related).toEqual(['not json']);
    const verifier = new AuditChainVerifier();
    lines.forEach((e) => verifier.push(e));
    expect(verifier.finish()).toEqual(await verifyAuditTrail(ledger, testEnv.DB, principal));
  });
});

describe('the export’s since and until, compared as instants', () => {
  const times = ['2026-11-01T18:50:01.999Z', '2026-11-01T18:50:02.000Z', '2026-11-01T18:50:02.008Z', '2026-11-01T18:50:02.009Z'];

  /** Four events at `times`, copied to D1 or still in the ledger's outbox (both readers filter). */
  async function trailAt(where: 'd1' | 'outbox') {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    let prev = GENESIS_HASH;
    const events = times.map((time, i) => {
      const e = chainAuditEvent(entry(i + 1), { seq: i + 1, prev_hash: prev, principal, id: newId('evt'), time });
      prev = e.hash;
      return e;
    });
    if (where === 'd1') await insertAuditEvents(testEnv.DB, events);
    await runInDurableObject(ledger, (_, state) => {
      if (where === 'outbox') for (const e of events) state.storage.sql.exec('INSERT INTO audit_outbox (seq, event) VALUES (?, ?)', e.seq, JSON.stringify(e));
      state.storage.sql.exec('UPDATE audit_head SET principal = ?, seq = ?, hash = ?', principal, events.length, prev);
    });
    return async (filter: AuditFilter) => (await collect(auditEvents(ledger, testEnv.DB, principal, 0, filter))).map((e) => e.seq);
  }

  for (const where of ['d1', 'outbox'] as const) {
    it(`at the millisecond boundary, whatever the precision the bound is written in (${where})`, async () => {
      const seqs = await trailAt(where);
      expect(await seqs({ until: '2026-11-01T18:50:02Z' })).toEqual([1]);
      expect(await seqs({ since: '2026-11-01T18:50:02Z' })).toEqual([2, 3, 4]);
      expect(await seqs({ until: '2026-11-01T18:50:02.008Z' })).toEqual([1, 2]);
      expect(await seqs({ since: '2026-11-01T18:50:02.008Z' })).toEqual([3, 4]);
      expect(await seqs({ since: '2026-11-01T18:50:02.00Z', until: '2026-11-01T18:50:02.009Z' })).toEqual([2, 3]);
      // Finer than the stored millisecond: 02.008 is before 02.0081 and 02.0089, and not before 02.0080.
      expect(await seqs({ until: '2026-11-01T18:50:02.0081Z' })).toEqual([1, 2, 3]);
      expect(await seqs({ since: '2026-11-01T18:50:02.0089Z' })).toEqual([4]);
      expect(await seqs({ until: '2026-11-01T18:50:02.0080Z' })).toEqual([1, 2]);
    });
  }
});

describe('signed chain heads', () => {
  it('are signed at an event copied to D1 whatever is recorded meanwhile, and never at a hash or seq the chain does not hold', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvents(principal, [1, 2, 3, 4, 5].map((i) => entry(i)));
    await ledger.flushAuditOutbox();
    const copied = (await testEnv.DB.prepare('SELECT seq, hash FROM audit_events WHERE principal = ?1 ORDER BY seq').bind(principal).all<{ seq: number; hash: string }>()).results;
    // A request records an event while the heads are signed (their D1 reads let it in); it is not chained yet.
    const heads = await runInDurableObject(ledger, async (instance) => {
      const signing = instance.headsAt([copied[0]!, copied[1]!]);
      instance.appendAuditEvent(principal, entry(6));
      return signing;
    });
    expect(heads.map((h) => [h.seq, h.hash])).toEqual([copied[0]!, copied[1]!].map((e) => [e.seq, e.hash]));
    expect(await ledger.headsAt([{ seq: 3, hash: copied[1]!.hash }, { seq: 2.5, hash: copied[1]!.hash }, { seq: 7, hash: copied[1]!.hash }])).toEqual([]);
  });

  it('are signed by the role’s published key, and catch a trail cut short together with its object', async () => {
    const principal = freshPrincipal();
    const ledger = ledgerOf(principal);
    await ledger.appendAuditEvents(principal, Array.from({ length: 8 }, (_, i) => entry(i)));
    await ledger.signHeadNow();
    const [signed] = await ledger.signedHeads();
    const head = await ledger.auditHead();
    expect(signed).toMatchObject({ seq: 8, hash: head.hash });
    const jwks = (await (await exports.default.fetch(new Request('http://127.0.0.1:8788/.well-known/jwks.json'))).json()) as JSONWebKeySet;
    const { payload, protectedHeader } = await jwtVerify(signed!.jws, createLocalJWKSet(jwks), { issuer: 'http://127.0.0.1:8788' });
    expect(protectedHeader.typ).toBe('oap-audit-head+jwt');
    expect(payload).toMatchObject({ sub: principal, seq: 8, hash: head.hash });
    // Signing again with nothing new adds nothing.
    await ledger.signHeadNow();
    expect(await ledger.signedHeads()).toHaveLength(1);

    await ledger.flushAuditOutbox();
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toMatchObject({ ok: true, events: 8 });
    // Someone removes the last three events from D1 and rolls the object's head back to match:
    // the chain is consistent with itself, but not with what was signed.
    const sixth = await testEnv.DB.prepare('SELECT hash FROM audit_events WHERE principal = ?1 AND seq = 5').bind(principal).first<{ hash: string }>();
    await testEnv.DB.prepare('DELETE FROM audit_events WHERE principal = ?1 AND seq > 5').bind(principal).run();
    await runInDurableObject(ledger, (_, state) => void state.storage.sql.exec('UPDATE audit_head SET seq = 5, hash = ?', sixth!.hash));
    expect(await verifyAuditTrail(ledger, testEnv.DB, principal)).toEqual({ ok: false, events: 5, first_broken_seq: 6 });
  });
});
