// §4 and the evidence issue: a trail of a million events exports as JSON
// Lines through the real route without being held: D1 is read a page at a
// time, and the response streams as it is read. The isolate could not hold
// the export whole (hundreds of megabytes of JSON), so its completing is part
// of the proof; the page count and chunk sizes are the rest.
import { runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { dpopProof } from '../support/agent-keys';
import { call, PROVIDER, useFakeOrchestrator } from '../support/fake-orchestrator';
import { agentWithToken } from '../support/paid-calls';

useFakeOrchestrator();

const testEnv = env as unknown as TestEnv;
const EVENTS = 1_000_000;
const PAGE = 500;

describe('a million-event trail', () => {
  it('exports every event, in order, a page at a time', { timeout: 300_000 }, async () => {
    const agent = await agentWithToken();
    const ledger = testEnv.LEDGER.get(testEnv.LEDGER.idFromName(agent.account));
    // The trail so far (the token's issuance), then a million events of this agent copied to D1 after it.
    // The head as the chain has it (reading it chains what the token's issuance recorded).
    const start = (await ledger.auditHead()).seq;
    const CHUNK = 100_000;
    for (let from = 1; from <= EVENTS; from += CHUNK) {
      await testEnv.DB.prepare(
        `WITH RECURSIVE n(i) AS (SELECT ?2 UNION ALL SELECT i + 1 FROM n WHERE i < ?3)
         INSERT INTO audit_events (principal, seq, id, time, actor_type, actor_id, mandate_id, action, target, outcome, reason, amount, currency, request_hash, related, prev_hash, hash)
         SELECT ?1, ?4 + i, 'evt_bulk_' || ?1 || '_' || i, '2026-11-01T00:00:00.000Z', 'agent', ?5, NULL, 'resource.read', NULL, 'succeeded', NULL, NULL, NULL, NULL, '[]', 'prev', 'hash' FROM n`,
      )
        .bind(agent.account, from, Math.min(from + CHUNK - 1, EVENTS), start, agent.agentId)
        .run();
    }
    await runInDurableObject(ledger, (_, s) => void s.storage.sql.exec('UPDATE audit_head SET seq = ?', start + EVENTS));

    const url = `${PROVIDER}/v1/audit?after=${start}`;
    const res = await call(`/v1/audit?after=${start}`, { headers: { authorization: `DPoP ${agent.token}`, dpop: await dpopProof(agent.key, 'GET', url, { accessToken: agent.token }) } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/jsonl');

    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let lines = 0;
    let expectedSeq = start + 1;
    let chunks = 0;
    let largestChunkLines = 0;
    let carry = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      chunks++;
      const parts = (carry + value).split('\n');
      carry = parts.pop()!;
      largestChunkLines = Math.max(largestChunkLines, parts.length);
      for (const line of parts) {
        // Parse a sample: every line is checked for order; every thousandth parsed whole.
        const seq = Number(/"seq":(\d+)/.exec(line)![1]);
        if (seq !== expectedSeq) throw new Error(`line ${lines + 1} has seq ${seq}, expected ${expectedSeq}`);
        if (seq % 1000 === 0) expect(JSON.parse(line)).toMatchObject({ seq, actor: { type: 'agent', id: agent.agentId } });
        expectedSeq++;
        lines++;
      }
    }
    expect(carry).toBe('');
    expect(lines).toBe(EVENTS);
    // Streamed in pages: many chunks, none with more than a page of events.
    expect(chunks).toBeGreaterThanOrEqual(EVENTS / PAGE);
    expect(largestChunkLines).toBeLessThanOrEqual(PAGE + 1);
  });
});
