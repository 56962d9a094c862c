// How the audit trail scales. Prints ratios measured in this run:
// - batching: cost per event of one-event appends over 100-event appends;
// - verification: cost per event at 10,000 events over 1,000 (≈1 means linear);
// - export: cost per event at 10,000 over 1,000, streamed a page at a time.
import { env } from 'cloudflare:workers';
import { expect, it } from 'vitest';
import type { AuditEntry } from '../workers/lib/audit';
import { auditEvents, verifyAuditTrail } from '../workers/lib/audit-trail';
import { newId } from '../workers/lib/ids';
import { timed } from './measure';

const testEnv = env as unknown as TestEnv;
const entry = (i: number): AuditEntry => ({ actor: { type: 'agent', id: `agt_${i % 7}` }, action: 'resource.provision', outcome: 'succeeded', target: `res_${i}` });

async function trail(events: number) {
  const principal = newId('acct');
  const ledger = testEnv.LEDGER.get(testEnv.LEDGER.idFromName(principal));
  for (let i = 0; i < events; i += 1000) await ledger.appendAuditEvents(principal, Array.from({ length: Math.min(1000, events - i) }, (_, j) => entry(i + j)));
  await ledger.flushAuditOutbox();
  return { principal, ledger };
}

it('audit trail ratios', async () => {
  const principal = newId('acct');
  const ledger = testEnv.LEDGER.get(testEnv.LEDGER.idFromName(principal));
  const single = await timed(async () => {
    for (let i = 0; i < 200; i++) await ledger.appendAuditEvent(principal, entry(i));
  });
  const batched = await timed(async () => {
    for (let i = 0; i < 2; i++) await ledger.appendAuditEvents(principal, Array.from({ length: 100 }, (_, j) => entry(j)));
  });

  const small = await trail(1_000);
  const large = await trail(10_000);
  const verifySmall = await timed(() => verifyAuditTrail(small.ledger, testEnv.DB, small.principal));
  const verifyLarge = await timed(() => verifyAuditTrail(large.ledger, testEnv.DB, large.principal));
  const drain = async (t: { principal: string; ledger: typeof ledger }) => {
    let n = 0;
    for await (const _ of auditEvents(t.ledger, testEnv.DB, t.principal, 0)) n++;
    return n;
  };
  const exportSmall = await timed(() => drain(small));
  const exportLarge = await timed(() => drain(large));

  const rows = [
    ['append: per-event cost, single / batched(100)', single / 200 / (batched / 200)],
    ['verify: per-event cost, 10k / 1k events', verifyLarge / 10_000 / (verifySmall / 1_000)],
    ['export: per-event cost, 10k / 1k events', exportLarge / 10_000 / (exportSmall / 1_000)],
  ] as const;
  console.log('\nratio  measurement');
  for (const [name, ratio] of rows) console.log(`${ratio.toFixed(2).padStart(5)}  ${name}`);
  expect(await drain(large)).toBe(10_000);
});
