// Model-based property tests of the money path (DESIGN.md "Money and order",
// PROTOCOL.md §3.1–3.2): random runs of concurrent batches of reserve +
// authorize, capture, void, hold expiry, retried idempotency keys and
// repeated or stray captures and voids, played by a provider against the
// orchestrator's charges API and the principal's ledger, with the provider
// side kept in a provider account ledger of its own. After every batch both
// sides are read back (see test/support/ledger-model.ts for each invariant).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { LedgerModel, scriptArb, worldSpecArb, type Family, type Op, type Weights, type WorldSpec } from '../support/ledger-model';

// The provider account ledgers here live in the orchestrator's Worker, so
// their own alarm cannot reach the orchestrator (no provider configuration)
// and says so before the test delivers their charge calls; that one message
// is noise here, every other warning is kept.
let restoreWarn: (() => void) | undefined;
beforeAll(() => {
  const warn = console.warn.bind(console);
  const spy = vi.spyOn(console, 'warn').mockImplementation((...args: unknown[]) => {
    if (typeof args[0] === 'string' && args[0].includes('ledger task charge_outbox failed')) return;
    warn(...args);
  });
  restoreWarn = () => spy.mockRestore();
});
afterAll(() => restoreWarn?.());
const TOTALS = new Map<string, number>();
afterAll(() => console.log(JSON.stringify(Object.fromEntries([...TOTALS].sort()), null, 1)));

async function runModel(spec: WorldSpec, batches: Op[][], families: Family[], options: { audit?: boolean } = {}) {
  const model = await LedgerModel.start(spec);
  for (const batch of batches) {
    await model.runBatch(batch);
    await model.check();
  }
  await model.settle();
  await model.check(true);
  if (options.audit) await model.checkAuditResolutions();
  for (const [k, v] of model.stats) TOTALS.set(k, (TOTALS.get(k) ?? 0) + v);
  const problems = model.report([...families, 'protocol']);
  expect(problems, `principal ${model.human.principal_id}, providers ${model.providers.map((p) => `${p.id}=${p.account}`).join(', ')}`).toEqual([]);
}

const property = (weights: Weights, families: Family[], options: { audit?: boolean } = {}) =>
  fc.asyncProperty(worldSpecArb, scriptArb(weights), (spec, batches) => runModel(spec, batches, families, options));

const settings = (numRuns: number) => ({ numRuns, interruptAfterTimeLimit: 90_000 });

describe('the principal ledger as a model: concurrent batches of reserve, authorize, capture, void, expiry and retries', () => {
  it('keeps pending + captured within every mandate, per-charge and monthly limit, equal to spentThisPeriod(), and declines only what cannot fit', async () => {
    await fc.assert(property({ authorize: 6, capture: 2, void: 2, expire: 1, retry: 1, redeliver: 0, maxDupes: 1 }, ['limits']), settings(18));
  }, 180_000);

  it('resolves each hold at most once: never both captured and voided, a voided charge refuses capture with 409 charge_voided, an expired hold is voided', async () => {
    await fc.assert(property({ authorize: 3, capture: 3, void: 2, expire: 2, retry: 0, redeliver: 3, maxDupes: 0 }, ['resolution'], { audit: true }), settings(15));
  }, 180_000);

  it('answers a repeated provider idempotency key with the same charge_id, never a second hold', async () => {
    await fc.assert(property({ authorize: 4, capture: 1, void: 1, expire: 1, retry: 4, redeliver: 0, maxDupes: 3 }, ['idempotency']), settings(10));
  }, 180_000);

  it("ends with each provider account's spentThisPeriod() equal to the orchestrator's pending + captured for that provider once every saga is resolved on both sides", async () => {
    await fc.assert(property({ authorize: 4, capture: 3, void: 2, expire: 2, retry: 1, redeliver: 1, maxDupes: 1 }, ['totals']), settings(15));
  }, 180_000);
});
