// Model-based property tests of the money path (DESIGN.md "Money and order",
// PROTOCOL.md §3.1–3.2): random runs of concurrent batches of reserve +
// authorize, capture, void, hold expiry, retried idempotency keys and
// repeated or stray captures and voids, played by a provider against the
// orchestrator's charges API and the principal's ledger, with the provider
// side kept in a provider account ledger of its own. After every batch both
// sides are read back (see test/support/ledger-model.ts for each invariant).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LedgerModel, scriptArb, worldSpecArb, type Family, type Op, type Weights, type WorldSpec } from '../support/ledger-model';

async function runModel(spec: WorldSpec, batches: Op[][], families: Family[], options: { audit?: boolean } = {}) {
  const model = await LedgerModel.start(spec);
  for (const batch of batches) {
    await model.runBatch(batch);
    await model.check();
  }
  await model.settle();
  await model.check(true);
  if (options.audit) await model.checkAuditResolutions();
  const problems = model.report([...families, 'protocol']);
  const where = `principal ${model.human.principal_id}, providers ${model.providers.map((p) => `${p.id}=${p.account}`).join(', ')}; what happened: ${JSON.stringify(Object.fromEntries(model.stats))}`;
  expect(problems, where).toEqual([]);
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
