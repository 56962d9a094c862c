// A model of the money path (DESIGN.md "Money and order", PROTOCOL.md §3.1–3.2)
// for property tests at the orchestrator: one principal with one or two
// mandates, one provider account ledger per provider (played by the test with
// beginSaga / recordAuthorization / completeSaga / voidSaga), and batches of
// concurrent operations against both. After each batch the model reads both
// sides back and records every broken invariant as a Problem, tagged with the
// family of invariants it belongs to, so each test can assert the ones it is
// named after.
//
// The provider's alarm cannot deliver its charge outbox from this test
// project (its env is the orchestrator's, so it has no provider
// configuration), so the test delivers the owed captures and voids itself
// right after each step, and applies what the provider's alarm would
// (principal-ledger.ts #settleChargeCalls): "settled" drops the call,
// a capture answered 409 charge_voided refunds the provider's own hold.
import { runDurableObjectAlarm, runInDurableObject } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import fc from 'fast-check';
import type { LedgerTx } from '../../durable-objects/ledger/context';
import type { Authorization } from '../../durable-objects/ledger/sagas';
import { refundHold } from '../../durable-objects/ledger/spend';
import type { AuditEvent } from '../../workers/lib/audit';
import { auditEvents } from '../../workers/lib/audit-trail';
import { asProvider, chargeBody, subjectAt } from './fake-provider';
import { activeMandate, inAYear, newPrincipal, ORCHESTRATOR, type Agent, type Human } from './orchestrator-client';

const testEnv = env as unknown as TestEnv;
export const ledgerOf = (name: string) => testEnv.LEDGER.get(testEnv.LEDGER.idFromName(name));
export type Ledger = ReturnType<typeof ledgerOf>;

export type ProviderId = 'cloud' | 'data';
/** What each provider sells in these tests (the charge's signed service and plan). */
export const OFFER: Record<ProviderId, { service: string; plan: string }> = {
  cloud: { service: 'domain', plan: 'com-1y' },
  data: { service: 'database', plan: 'pro' },
};
/** PROTOCOL.md §3.2: the default monthly limit, of a principal at the orchestrator and of an account at a provider. */
export const MONTHLY_LIMIT = 10_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

// ── What is generated ─────────────────────────────────────────────────────

export type WorldSpec = {
  providers: ProviderId[];
  /** With two providers: one mandate (and agent) per provider, so the principal's monthly limit is shared by both. */
  separateMandates: boolean;
  /** spend_limit of each mandate, in cents. */
  spendLimits: number[];
  /** max_per_charge at each provider (index as in `providers`), or none. */
  maxPerCharge: (number | null)[];
};

export type Op =
  | { kind: 'authorize'; provider: number; amount: number; dupes: number }
  | { kind: 'capture' | 'void' | 'expire' | 'retry'; pick: number }
  | { kind: 'redeliver'; pick: number; opposite: boolean };

export type Weights = { authorize: number; capture: number; void: number; expire: number; retry: number; redeliver: number; maxDupes: number };

export const worldSpecArb: fc.Arbitrary<WorldSpec> = fc.record({
  providers: fc.constantFrom<ProviderId[]>(['cloud'], ['data'], ['cloud', 'data']),
  separateMandates: fc.boolean(),
  spendLimits: fc.tuple(fc.integer({ min: 3000, max: 8000 }), fc.integer({ min: 3000, max: 8000 })).map((t) => [...t]),
  maxPerCharge: fc.tuple(fc.option(fc.integer({ min: 800, max: 2500 }), { nil: null }), fc.option(fc.integer({ min: 800, max: 2500 }), { nil: null })).map((t) => [...t]),
});

export function opArb(w: Weights): fc.Arbitrary<Op> {
  const entries: { arbitrary: fc.Arbitrary<Op>; weight: number }[] = [];
  const add = (weight: number, arbitrary: fc.Arbitrary<Op>) => {
    if (weight > 0) entries.push({ arbitrary, weight });
  };
  add(w.authorize, fc.record({ kind: fc.constant('authorize' as const), provider: fc.nat(1), amount: fc.integer({ min: 100, max: 3000 }), dupes: fc.nat(w.maxDupes) }));
  for (const kind of ['capture', 'void', 'expire', 'retry'] as const) add(w[kind], fc.record({ kind: fc.constant(kind), pick: fc.nat(1000) }));
  add(w.redeliver, fc.record({ kind: fc.constant('redeliver' as const), pick: fc.nat(1000), opposite: fc.boolean() }));
  return fc.oneof(...entries);
}

/** A run: a few batches, each a handful of operations sent at once. */
export const scriptArb = (w: Weights, batches: { min: number; max: number } = { min: 3, max: 7 }, perBatch = 7) =>
  fc.array(fc.array(opArb(w), { minLength: 1, maxLength: perBatch }), { minLength: batches.min, maxLength: batches.max });

// ── The world ─────────────────────────────────────────────────────────────

export type MandateSide = { mandate_id: string; agent: Agent; limit: number };
export type ProviderSide = { id: ProviderId; account: string; ledger: Ledger; mandate: MandateSide; sub: string; maxPerCharge: number | null };

export type Family = 'limits' | 'resolution' | 'idempotency' | 'totals' | 'protocol';
export type Problem = { family: Family; batch: number; what: string };

type OrchStatus = 'none' | 'pending' | 'captured' | 'voided' | 'refunded';
type ProvState = 'declined' | 'reserved' | 'authorized' | 'completed' | 'voided';
type Observation = { batch: number; via: string; action: 'authorize' | 'capture' | 'void' | 'expire'; status: number; code?: string; chargeStatus?: string; chargeId?: string };

export type SagaRec = {
  id: string;
  provider: ProviderSide;
  amount: number;
  resourceId: string;
  holdId: string;
  chargeId: string | null;
  /**
   * Every other saga runs as a synchronous creation does: its authorization is kept by the request and recorded
   * with the completion or the void, so the saga stays `reserved` meanwhile (null when recorded at once instead).
   */
  unrecorded: Authorization | null;
  defersRecord: boolean;
  /** Both read back from the ledgers after each batch. */
  provState: ProvState;
  orchStatus: OrchStatus;
  seen: Observation[];
};

type Wire = {
  charge_id?: string;
  status?: string | number;
  code?: string;
  detail?: string;
  decision?: unknown;
  limit?: { amount: number };
  spent?: { amount: number };
  requested?: { amount: number };
  step_up_url?: string;
};

type OrchDecline = { rec: SagaRec; body: Wire };
type ProviderDecline = { rec: SagaRec; code: string; limit?: { amount: number }; spent?: { amount: number } };

export class LedgerModel {
  readonly sagas: SagaRec[] = [];
  readonly problems: Problem[] = [];
  /** How often each thing happened, for judging what a run exercised. */
  readonly stats = new Map<string, number>();
  batch = 0;

  private constructor(
    readonly human: Human,
    readonly orchestrator: Ledger,
    readonly mandates: MandateSide[],
    readonly providers: ProviderSide[],
  ) {}

  /** A fresh principal with active mandate(s) as `spec` says, and a fresh account ledger per provider. */
  static async start(spec: WorldSpec): Promise<LedgerModel> {
    const human = await newPrincipal();
    const groups: number[][] = spec.separateMandates && spec.providers.length > 1 ? spec.providers.map((_, i) => [i]) : [spec.providers.map((_, i) => i)];
    const mandates: MandateSide[] = [];
    const providers: ProviderSide[] = [];
    for (const [g, group] of groups.entries()) {
      const limit = spec.spendLimits[g] ?? 5000;
      const { agent, mandate_id } = await activeMandate(human, undefined, {
        description: 'Model test',
        scope: group.map((i) => {
          const p = spec.providers[i]!;
          const max = spec.maxPerCharge[i] ?? null;
          return { provider: p, services: [OFFER[p].service], ...(max === null ? {} : { max_per_charge: { amount: max, currency: 'usd' } }) };
        }),
        spend_limit: { amount: limit, currency: 'usd', period: 'month' },
        expires_at: inAYear(),
      });
      const mandate = { mandate_id, agent, limit };
      mandates.push(mandate);
      for (const i of group) {
        const id = spec.providers[i]!;
        const account = `acct_model_${crypto.randomUUID().replaceAll('-', '')}`;
        providers.push({ id, account, ledger: ledgerOf(account), mandate, sub: await subjectAt(agent, mandate_id, id), maxPerCharge: spec.maxPerCharge[i] ?? null });
      }
    }
    return new LedgerModel(human, ledgerOf(human.principal_id), mandates, providers);
  }

  count(what: string) {
    this.stats.set(what, (this.stats.get(what) ?? 0) + 1);
  }

  /** Records a broken invariant once (the first batch it shows in). */
  flag(family: Family, what: string) {
    if (this.problems.some((p) => p.family === family && p.what === what)) return;
    this.problems.push({ family, batch: this.batch, what });
  }

  /** Runs one batch: every operation at once, each picking its saga from the state at the start of the batch. */
  async runBatch(ops: Op[]): Promise<void> {
    this.batch++;
    const existing = [...this.sagas];
    const at = (xs: SagaRec[], pick: number) => (xs.length ? xs[pick % xs.length]! : undefined);
    // Authorized at the orchestrator and not ended here: recorded on the saga, or kept by the request.
    const authorizedAtProvider = existing.filter((s) => s.provState === 'authorized' || (s.provState === 'reserved' && s.unrecorded));
    const withCharge = existing.filter((s) => s.chargeId !== null);
    const pendingAtOrchestrator = existing.filter((s) => s.orchStatus === 'pending');
    const resolvedAtOrchestrator = existing.filter((s) => s.orchStatus === 'captured' || s.orchStatus === 'voided');

    // For the decline checks: what each limit may have held while the batch ran.
    const scopesOf = (p: ProviderSide) => ['principal', `mandate:${p.mandate.mandate_id}`];
    const committedBefore = new Map<string, number>();
    const releasable = new Map<string, number>();
    const bump = (m: Map<string, number>, key: string, by: number) => m.set(key, (m.get(key) ?? 0) + by);
    for (const s of existing) if (s.orchStatus === 'pending' || s.orchStatus === 'captured') for (const k of scopesOf(s.provider)) bump(committedBefore, k, s.amount);

    const created: SagaRec[] = [];
    const orchDeclines: OrchDecline[] = [];
    const providerDeclines: ProviderDecline[] = [];
    const tasks: (() => Promise<void>)[] = [];
    const releasing = new Set<SagaRec>();
    for (const op of ops) {
      switch (op.kind) {
        case 'authorize': {
          const provider = this.providers[op.provider % this.providers.length]!;
          const rec = this.newSaga(provider, op.amount);
          created.push(rec);
          tasks.push(() => this.authorize(rec, op.dupes, orchDeclines, providerDeclines));
          break;
        }
        case 'capture': {
          const rec = at(authorizedAtProvider, op.pick);
          if (rec) tasks.push(() => this.capture(rec));
          break;
        }
        case 'void': {
          const rec = at(authorizedAtProvider, op.pick);
          if (rec) {
            releasing.add(rec);
            tasks.push(() => this.void(rec));
          }
          break;
        }
        case 'expire': {
          const rec = at(pendingAtOrchestrator, op.pick);
          if (rec) {
            releasing.add(rec);
            tasks.push(() => this.expire(rec));
          }
          break;
        }
        case 'retry': {
          const rec = at(withCharge, op.pick);
          if (rec) tasks.push(() => this.retry(rec));
          break;
        }
        case 'redeliver': {
          const rec = at(resolvedAtOrchestrator, op.pick);
          if (rec) tasks.push(() => this.redeliver(rec, op.opposite));
          break;
        }
      }
    }
    for (const s of releasing) if (s.orchStatus === 'pending') for (const k of scopesOf(s.provider)) bump(releasable, k, s.amount);

    await Promise.all(
      tasks.map((t) =>
        t().catch((error: unknown) => {
          this.flag('protocol', `an operation threw: ${error instanceof Error ? error.stack ?? error.message : String(error)}`);
        }),
      ),
    );

    // A decline is right only if, in some order of this batch, the charge did not fit.
    for (const { rec, body } of orchDeclines) {
      const p = rec.provider;
      const label = `${p.id} charge of ${rec.amount} (saga ${rec.id})`;
      if (body.code !== 'spend_limit_exceeded') {
        this.flag('limits', `${label} declined with ${String(body.code)}; only spend_limit_exceeded can apply here (${body.detail ?? ''})`);
        continue;
      }
      if (p.maxPerCharge !== null && rec.amount > p.maxPerCharge) {
        if (body.limit?.amount !== p.maxPerCharge || body.requested?.amount !== rec.amount) this.flag('limits', `${label} is over max_per_charge ${p.maxPerCharge} but the decline names limit ${body.limit?.amount}, requested ${body.requested?.amount}`);
        if (body.step_up_url !== `${ORCHESTRATOR}/mandates/${p.mandate.mandate_id}/approval`) this.flag('protocol', `${label}: max_per_charge decline has step_up_url ${body.step_up_url}`);
        continue;
      }
      const othersIn = (key: string) => sum(created.filter((c) => c !== rec && c.chargeId !== null && scopesOf(c.provider).includes(key)).map((c) => c.amount));
      const limits = [
        { key: `mandate:${p.mandate.mandate_id}`, limit: p.mandate.limit, stepUp: `${ORCHESTRATOR}/mandates/${p.mandate.mandate_id}/approval` },
        { key: 'principal', limit: MONTHLY_LIMIT, stepUp: `${ORCHESTRATOR}/dashboard/limits` },
      ];
      const upper = (key: string) => (committedBefore.get(key) ?? 0) + othersIn(key);
      const lower = (key: string) => (committedBefore.get(key) ?? 0) - (releasable.get(key) ?? 0);
      if (limits.every((l) => upper(l.key) + rec.amount <= l.limit)) {
        this.flag('limits', `${label} declined although it fits every limit in any order of the batch: ${limits.map((l) => `${l.key} at most ${upper(l.key)} + ${rec.amount} <= ${l.limit}`).join('; ')} (reported limit ${body.limit?.amount}, spent ${body.spent?.amount})`);
        continue;
      }
      const which = limits.find((l) => l.limit === body.limit?.amount);
      if (!which) {
        this.flag('limits', `${label} declined naming limit ${body.limit?.amount}, which is neither the mandate's ${p.mandate.limit} nor the monthly ${MONTHLY_LIMIT}`);
        continue;
      }
      const spent = body.spent?.amount ?? Number.NaN;
      if (!(spent + rec.amount > which.limit)) this.flag('limits', `${label} declined by ${which.key} although spent ${spent} + ${rec.amount} <= ${which.limit}`);
      if (spent < lower(which.key) || spent > upper(which.key)) this.flag('limits', `${label}: decline reports ${which.key} spent ${spent}, outside what it can have been during the batch [${lower(which.key)}, ${upper(which.key)}]`);
      if (body.requested?.amount !== rec.amount) this.flag('limits', `${label}: decline reports requested ${body.requested?.amount}`);
      if (body.step_up_url !== which.stepUp) this.flag('protocol', `${label}: decline by ${which.key} has step_up_url ${body.step_up_url}, expected ${which.stepUp}`);
    }
    for (const d of providerDeclines) {
      const label = `${d.rec.provider.id} reservation of ${d.rec.amount} (saga ${d.rec.id})`;
      if (d.code !== 'spend_limit_exceeded') this.flag('limits', `${label} declined at the provider with ${d.code}`);
      else if (d.limit?.amount !== MONTHLY_LIMIT || !((d.spent?.amount ?? Number.NaN) + d.rec.amount > MONTHLY_LIMIT)) this.flag('limits', `${label} declined at the provider with limit ${d.limit?.amount}, spent ${d.spent?.amount}`);
    }
  }

  private newSaga(provider: ProviderSide, amount: number): SagaRec {
    const body = crypto.randomUUID().replaceAll('-', '');
    const defersRecord = this.sagas.length % 2 === 1;
    const rec: SagaRec = { id: `op_${body}`, provider, amount, resourceId: `res_${body}`, holdId: `hld_${body}`, chargeId: null, unrecorded: null, defersRecord, provState: 'reserved', orchStatus: 'none', seen: [] };
    this.sagas.push(rec);
    return rec;
  }

  private async signedCharge(rec: SagaRec) {
    const p = rec.provider;
    const body = await chargeBody(p.mandate.agent.key, {
      provider: p.id,
      mandate_id: p.mandate.mandate_id,
      agent_id: p.mandate.agent.agent_id,
      sub: p.sub,
      ...OFFER[p.id],
      amount: rec.amount,
      expected: rec.amount,
      key: rec.id,
    });
    return { ...body, resource_ref: rec.resourceId };
  }

  private observe(rec: SagaRec, via: string, action: Observation['action'], status: number, body: Wire | null) {
    this.count(`${via}:${action}:${status}${typeof body?.code === 'string' ? `:${body.code}` : ''}`);
    rec.seen.push({
      batch: this.batch,
      via,
      action,
      status,
      ...(typeof body?.code === 'string' ? { code: body.code } : {}),
      ...(typeof body?.status === 'string' ? { chargeStatus: body.status } : {}),
      ...(typeof body?.charge_id === 'string' ? { chargeId: body.charge_id } : {}),
    });
  }

  /** §3.1 steps 2–3: reserve at the provider, authorize at the orchestrator (with `dupes` extra concurrent POSTs of the same key), record or void. */
  private async authorize(rec: SagaRec, dupes: number, orchDeclines: OrchDecline[], providerDeclines: ProviderDecline[]) {
    const p = rec.provider;
    const charge = await this.signedCharge(rec);
    const started = await p.ledger.beginSaga(p.account, {
      saga_id: rec.id,
      resource_id: rec.resourceId,
      hold_id: rec.holdId,
      agent_id: p.mandate.agent.agent_id,
      mandate_id: p.mandate.mandate_id,
      orchestrator: ORCHESTRATOR,
      principal_sub: p.sub,
      token_jti: charge.token_jti,
      service: OFFER[p.id].service,
      plan: OFFER[p.id].plan,
      price: { amount: rec.amount, currency: 'usd' },
      parameters: '{}',
      request: JSON.stringify(charge.agent_request),
      async: false,
      velocity: null,
    });
    if (!started.ok) {
      this.count(`provider-decline:${started.code}`);
      rec.provState = 'declined';
      providerDeclines.push({ rec, code: started.code, ...(started.limit ? { limit: started.limit } : {}), ...(started.spent ? { spent: started.spent } : {}) });
      return;
    }
    const responses = await Promise.all(
      Array.from({ length: 1 + dupes }, async () => {
        const res = await asProvider(p.id, 'POST', '/v1/charges', charge);
        return { status: res.status, body: (await res.json()) as Wire };
      }),
    );
    const ids = new Set<string>();
    for (const r of responses) {
      this.observe(rec, 'authorize', 'authorize', r.status, r.body);
      if (r.status === 201) {
        ids.add(String(r.body.charge_id));
        if (r.body.status !== 'authorized' && r.body.status !== 'captured' && r.body.status !== 'voided') this.flag('protocol', `authorize ${rec.id} answered 201 with status ${String(r.body.status)}`);
      } else if (r.status === 402) orchDeclines.push({ rec, body: r.body });
      else this.flag('protocol', `authorize ${rec.id} answered ${r.status} ${JSON.stringify(r.body)}`);
    }
    if (ids.size > 1) this.flag('idempotency', `${responses.length} concurrent POST /v1/charges with idempotency_key ${rec.id} created ${ids.size} charges: ${[...ids].join(', ')}`);
    const first = responses.find((r) => r.status === 201);
    if (first) {
      rec.chargeId = String(first.body.charge_id);
      const decision = JSON.stringify(first.body.decision ?? null);
      if (rec.defersRecord) rec.unrecorded = { charge_id: rec.chargeId, decision };
      else await p.ledger.recordAuthorization(p.account, rec.id, rec.chargeId, decision);
    } else {
      await p.ledger.voidSaga(p.account, rec.id, `declined:${String(responses[0]?.body.code ?? responses[0]?.status)}`);
    }
  }

  /** §3.1 step 4, success: the provider completes (captures its own hold), then captures at the orchestrator. */
  private async capture(rec: SagaRec) {
    const p = rec.provider;
    await p.ledger.completeSaga(p.account, rec.id, { fields: '{}', credentials: null, receipt: null, billing: 'one_time', renews_at: null, ...(rec.unrecorded ? { authorization: rec.unrecorded } : {}) });
    await this.deliverOwed(rec, 'capture');
  }

  /** §3.1 step 4, failure: the provider voids its saga (and its hold), then voids at the orchestrator. */
  private async void(rec: SagaRec) {
    const p = rec.provider;
    await p.ledger.voidSaga(p.account, rec.id, 'provision_failed', false, rec.unrecorded ?? undefined);
    await this.deliverOwed(rec, 'void');
  }

  /** The provider's charge outbox, delivered as its alarm would (settleChargeCall + #settleChargeCalls). */
  private async deliverOwed(rec: SagaRec, via: string) {
    const p = rec.provider;
    const calls = (await p.ledger.pendingChargeCalls()).filter((c) => c.saga_id === rec.id);
    for (const call of calls) {
      const res = await asProvider(p.id, 'POST', `/v1/charges/${call.charge_id}/${call.action}`, {});
      const body = (await res.json()) as Wire;
      // The model makes no plan changes: its sagas owe captures and voids only, never refunds.
      this.observe(rec, `${via}:outbox`, call.action as 'capture' | 'void', res.status, body);
      let outcome: 'settled' | 'voided_remotely' | 'unexpected';
      if (res.status === 200) outcome = 'settled';
      else if (call.action === 'capture' && res.status === 409 && body.code === 'charge_voided') outcome = 'voided_remotely';
      else if (call.action === 'void' && res.status === 409) outcome = 'settled';
      else outcome = 'unexpected';
      if (outcome === 'unexpected') {
        this.flag('protocol', `the provider's ${call.action} of ${call.charge_id} (saga ${rec.id}) was answered ${res.status} ${JSON.stringify(body)}`);
        continue;
      }
      await runInDurableObject(p.ledger, (instance, state) => {
        const sql = state.storage.sql;
        if (outcome === 'voided_remotely') {
          this.count('provider-refund');
          const tx: LedgerTx = { sql, now: Date.now(), audit: (entry) => instance.appendAuditEvent(p.account, entry), schedule: () => undefined };
          sql.exec(`UPDATE resources SET status = 'deleted', updated = ? WHERE id = ?`, new Date(tx.now).toISOString(), rec.resourceId);
          refundHold(tx, rec.holdId, { type: 'system', id: 'saga' }, 'charge_voided_at_orchestrator');
        }
        sql.exec('DELETE FROM charge_outbox WHERE id = ?', call.id);
      });
    }
  }

  /** A pending hold past its deadline: the orchestrator's alarm voids it (DESIGN.md "Money and order"). */
  private async expire(rec: SagaRec) {
    const chargeId = rec.chargeId!;
    const before = await runInDurableObject(this.orchestrator, async (_instance, state) => {
      const sql = state.storage.sql;
      const now = Date.now();
      // The ledger's own schedule must already hold an expiry no later than this pending hold's deadline.
      const hold = sql.exec<{ status: string; expires_at: number }>('SELECT status, expires_at FROM holds WHERE id = ?', chargeId).toArray()[0];
      const due = sql.exec<{ due_at: number }>(`SELECT due_at FROM schedule WHERE task = 'hold_expiry'`).toArray()[0]?.due_at ?? null;
      // Its deadline passes now; the alarm is due now.
      sql.exec(`UPDATE holds SET expires_at = ? WHERE id = ? AND status = 'pending'`, now - 1, chargeId);
      sql.exec(`INSERT INTO schedule (task, due_at) VALUES ('hold_expiry', ?) ON CONFLICT (task) DO UPDATE SET due_at = MIN(due_at, excluded.due_at)`, now - 1);
      await state.storage.setAlarm(now);
      return { status: hold?.status ?? 'missing', expires_at: hold?.expires_at ?? null, due };
    });
    if (before.status === 'pending' && (before.due === null || before.expires_at === null || before.due > before.expires_at)) {
      this.flag('resolution', `pending charge ${chargeId} (deadline ${before.expires_at}) had no hold expiry scheduled in time (hold_expiry due ${before.due})`);
    }
    let hold = await this.orchestrator.getCharge(chargeId);
    for (let i = 0; i < 100 && hold?.status === 'pending'; i++) {
      await runDurableObjectAlarm(this.orchestrator);
      hold = await this.orchestrator.getCharge(chargeId);
      if (hold?.status === 'pending') await sleep(5);
    }
    rec.seen.push({ batch: this.batch, via: 'expire', action: 'expire', status: 0, chargeStatus: hold?.status ?? 'missing' });
    this.count(`expire:${hold?.status ?? 'missing'}`);
    if (hold?.status === 'pending') this.flag('resolution', `charge ${chargeId} is still pending after its hold passed its deadline and the alarm ran`);
  }

  /** The provider sends the same idempotency key again (a lost response): the same charge, never a second hold. */
  private async retry(rec: SagaRec) {
    const p = rec.provider;
    const res = await asProvider(p.id, 'POST', '/v1/charges', await this.signedCharge(rec));
    const body = (await res.json()) as Wire;
    this.observe(rec, 'retry', 'authorize', res.status, body);
    if (res.status !== 201) this.flag('idempotency', `a retry of idempotency_key ${rec.id} (charge ${rec.chargeId}) was answered ${res.status} ${body.code ?? ''}, not the first charge`);
    else if (body.charge_id !== rec.chargeId) this.flag('idempotency', `a retry of idempotency_key ${rec.id} returned charge ${body.charge_id}, not ${rec.chargeId}`);
  }

  /**
   * A capture or void sent again after the charge resolved: the same one
   * (an outbox delivered twice: alarms run at least once) answers the same;
   * the opposite one is refused, 409 (charge_voided for a capture).
   */
  private async redeliver(rec: SagaRec, opposite: boolean) {
    const p = rec.provider;
    const was = rec.orchStatus as 'captured' | 'voided';
    const action = (was === 'captured') !== opposite ? 'capture' : 'void';
    const res = await asProvider(p.id, 'POST', `/v1/charges/${rec.chargeId}/${action}`, {});
    const body = (await res.json()) as Wire;
    this.observe(rec, opposite ? 'stray' : 'redeliver', action, res.status, body);
    const label = `${opposite ? 'a stray' : 'a repeated'} ${action} of ${was} charge ${rec.chargeId}`;
    if (!opposite && (res.status !== 200 || body.status !== was)) this.flag('resolution', `${label} was answered ${res.status} ${String(body.status)} ${body.code ?? ''}, not 200 ${was}`);
    if (opposite && action === 'capture' && (res.status !== 409 || body.code !== 'charge_voided')) this.flag('resolution', `${label} was answered ${res.status} ${String(body.code ?? body.status)}, not 409 charge_voided`);
    if (opposite && action === 'void' && res.status !== 409) this.flag('resolution', `${label} was answered ${res.status} ${String(body.code ?? body.status)}, not 409`);
  }

  /** What the provider's saga recovery does to sagas left open: void them, and the orchestrator's charge with them. */
  async settle(): Promise<void> {
    this.batch++;
    await Promise.all(this.sagas.filter((s) => s.provState === 'authorized' || s.provState === 'reserved').map((s) => this.void(s)));
  }

  /** Reads both sides back and records every broken invariant. `final`: every saga must be resolved on both sides. */
  async check(final = false): Promise<void> {
    const holds = await this.orchestrator.listCharges({});
    const byId = new Map(holds.map((h) => [h.id, h]));

    // Idempotency: every hold is one saga's, one per (provider, key).
    const known = new Set(this.sagas.map((s) => s.chargeId).filter((id): id is string => id !== null));
    const perKey = new Map<string, string[]>();
    for (const h of holds) {
      if (!known.has(h.id)) this.flag('idempotency', `hold ${h.id} (${h.provider}, idempotency_key ${h.idempotency_key}, ${h.status} ${h.amount}) belongs to no saga: a second hold for a key`);
      const k = `${h.provider}|${h.idempotency_key}`;
      perKey.set(k, [...(perKey.get(k) ?? []), h.id]);
    }
    for (const [k, ids] of perKey) if (ids.length > 1) this.flag('idempotency', `${ids.length} holds for provider|key ${k}: ${ids.join(', ')}`);

    // Resolution: each charge resolves at most once, and what was answered is what happened.
    for (const s of this.sagas) {
      if (s.chargeId === null) continue;
      const h = byId.get(s.chargeId);
      if (!h) {
        this.flag('protocol', `charge ${s.chargeId} (saga ${s.id}) was authorized but is not in listCharges`);
        continue;
      }
      const status = h.status as OrchStatus;
      const label = `charge ${s.chargeId} (${s.provider.id}, ${s.amount})`;
      const history = () => s.seen.map((o) => `b${o.batch} ${o.via}:${o.action}→${o.status}${o.code ? ` ${o.code}` : ''}${o.chargeStatus ? ` ${o.chargeStatus}` : ''}`).join(', ');
      if ((s.orchStatus === 'captured' || s.orchStatus === 'voided') && status !== s.orchStatus) this.flag('resolution', `${label} was ${s.orchStatus} and is now ${status} [${history()}]`);
      if (status === 'refunded') this.flag('resolution', `${label} is refunded at the orchestrator, which no operation here asks for [${history()}]`);
      const captured200 = s.seen.filter((o) => o.action === 'capture' && o.status === 200);
      const voided200 = s.seen.filter((o) => o.action === 'void' && o.status === 200);
      if (captured200.length && voided200.length) this.flag('resolution', `${label} was both captured and voided (200 to both) [${history()}]`);
      if (captured200.some((o) => o.chargeStatus !== 'captured') || voided200.some((o) => o.chargeStatus !== 'voided')) this.flag('resolution', `${label}: a 200 answer names another status [${history()}]`);
      if (captured200.length && status !== 'captured') this.flag('resolution', `${label} was captured (200) and is now ${status} [${history()}]`);
      if (voided200.length && status !== 'voided') this.flag('resolution', `${label} was voided (200) and is now ${status} [${history()}]`);
      for (const o of s.seen.filter((x) => x.action === 'capture' && x.status === 409)) {
        if (o.code !== 'charge_voided') this.flag('resolution', `${label}: a refused capture has code ${o.code}, not charge_voided [${history()}]`);
        if (status !== 'voided') this.flag('resolution', `${label}: a capture was refused as voided, yet the charge is ${status} [${history()}]`);
      }
      if (s.seen.some((x) => x.action === 'void' && x.status === 409) && status !== 'captured') this.flag('resolution', `${label}: a void was refused, yet the charge is ${status}, not captured [${history()}]`);
      for (const o of s.seen.filter((x) => x.action === 'expire')) {
        if (o.chargeStatus === 'voided' && captured200.length) this.flag('resolution', `${label}: voided by expiry and captured [${history()}]`);
      }
      s.orchStatus = status;
    }

    // Limits at the orchestrator: captured + pending fits every limit and is what the ledger counts.
    const committed = holds.filter((h) => h.status === 'pending' || h.status === 'captured');
    const committedOf = (pred: (h: (typeof holds)[number]) => boolean) => sum(committed.filter(pred).map((h) => h.amount));
    const total = committedOf(() => true);
    const spentPrincipal = await this.orchestrator.spentThisPeriod();
    if (spentPrincipal !== total) this.flag('limits', `spentThisPeriod() is ${spentPrincipal}, but pending + captured holds sum to ${total}`);
    if (total > MONTHLY_LIMIT) this.flag('limits', `pending + captured ${total} exceeds the principal's monthly limit ${MONTHLY_LIMIT}`);
    const summary = await this.orchestrator.limitsSummary();
    const principalRow = summary.find((r) => r.scope === 'principal');
    if (principalRow?.spent.amount !== total || principalRow.limit.amount !== MONTHLY_LIMIT) this.flag('limits', `limitsSummary principal row ${JSON.stringify(principalRow)} disagrees with holds (${total} of ${MONTHLY_LIMIT})`);
    for (const m of this.mandates) {
      const inMandate = committedOf((h) => h.mandate_id === m.mandate_id);
      if (inMandate > m.limit) this.flag('limits', `pending + captured ${inMandate} under mandate ${m.mandate_id} exceeds its spend_limit ${m.limit}`);
      const scoped = await this.orchestrator.spentThisPeriod(`mandate:${m.mandate_id}`);
      if (scoped !== inMandate) this.flag('limits', `spentThisPeriod(mandate) is ${scoped}, holds under mandate ${m.mandate_id} sum to ${inMandate}`);
      const row = summary.find((r) => r.id === m.mandate_id);
      if (row?.spent.amount !== inMandate || row.limit.amount !== m.limit) this.flag('limits', `limitsSummary row of ${m.mandate_id} ${JSON.stringify(row)} disagrees (${inMandate} of ${m.limit})`);
    }
    for (const p of this.providers) {
      const scoped = await this.orchestrator.spentThisPeriod(`provider:${p.id}`);
      const inProvider = committedOf((h) => h.provider === p.id);
      if (scoped !== inProvider) this.flag('limits', `spentThisPeriod(provider:${p.id}) is ${scoped}, holds at ${p.id} sum to ${inProvider}`);
      if (p.maxPerCharge !== null) for (const h of holds.filter((x) => x.provider === p.id && x.amount > p.maxPerCharge!)) this.flag('limits', `charge ${h.id} of ${h.amount} at ${p.id} exceeds max_per_charge ${p.maxPerCharge}`);
    }

    // Both sides: each saga's two holds agree, and each provider's totals are the orchestrator's.
    for (const p of this.providers) {
      const side = await runInDurableObject(p.ledger, (_instance, state) => ({
        sagas: state.storage.sql.exec<{ id: string; state: string; charge_id: string | null }>('SELECT id, state, charge_id FROM sagas').toArray(),
        holds: state.storage.sql.exec<{ id: string; status: string; amount: number }>('SELECT id, status, amount FROM holds').toArray(),
        owed: state.storage.sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM charge_outbox').one().n,
      }));
      const sagaState = new Map(side.sagas.map((r) => [r.id, r.state]));
      const holdStatus = new Map(side.holds.map((r) => [r.id, r.status]));
      if (side.owed > 0) this.flag('totals', `${p.id}: ${side.owed} capture/void calls are still owed to the orchestrator after the batch`);
      let stillOpenButVoidedThere = 0;
      for (const s of this.sagas.filter((x) => x.provider === p)) {
        if (s.provState === 'declined') continue;
        const st = sagaState.get(s.id) as ProvState | undefined;
        if (!st) {
          this.flag('protocol', `saga ${s.id} is missing at ${p.id}`);
          continue;
        }
        s.provState = st;
        const local = holdStatus.get(s.holdId);
        const orch = s.orchStatus;
        const label = `saga ${s.id} at ${p.id} (${s.amount}): provider ${st}/${local}, orchestrator ${orch}`;
        // A saga whose request keeps its authorization is reserved until it ends, and then open like an authorized one.
        const open = st === 'authorized' || (st === 'reserved' && s.unrecorded !== null);
        if (st === 'reserved' && s.unrecorded === null) this.flag('protocol', `${label}: still reserved after its authorization ended`);
        if (st === 'completed' && !((local === 'captured' && orch === 'captured') || (local === 'refunded' && orch === 'voided'))) this.flag('totals', `${label}: a completed saga must be captured on both sides, or refunded here after a void there`);
        if (st === 'voided' && !(local === 'voided' && (orch === 'voided' || orch === 'none'))) this.flag('totals', `${label}: a voided saga must be voided on both sides`);
        if (open && !(local === 'pending' && (orch === 'pending' || orch === 'voided'))) this.flag('totals', `${label}: an authorized saga must be pending here, pending (or expired) there`);
        if (open && orch === 'voided') stillOpenButVoidedThere += s.amount;
        if (final && (st === 'authorized' || st === 'reserved' || orch === 'pending')) this.flag('totals', `${label}: not resolved after settling`);
      }
      const providerSpent = await p.ledger.spentThisPeriod();
      const providerCommitted = sum(side.holds.filter((h) => h.status === 'pending' || h.status === 'captured').map((h) => h.amount));
      if (providerSpent !== providerCommitted) this.flag('totals', `${p.id} account: spentThisPeriod() ${providerSpent} but its pending + captured holds sum to ${providerCommitted}`);
      if (providerSpent > MONTHLY_LIMIT) this.flag('limits', `${p.id} account: spent ${providerSpent} exceeds the account's monthly limit ${MONTHLY_LIMIT}`);
      const orchestratorSide = committedOf((h) => h.provider === p.id);
      if (providerSpent !== orchestratorSide + stillOpenButVoidedThere) {
        this.flag(
          'totals',
          `${p.id}: the provider account counts ${providerSpent}, the orchestrator ${orchestratorSide} pending + captured` +
            (stillOpenButVoidedThere ? ` (+ ${stillOpenButVoidedThere} expired there, still open here)` : '') +
            (final ? ' after every saga was resolved on both sides' : ''),
        );
      }
    }
    if (final) {
      for (const h of holds.filter((x) => x.status === 'pending')) this.flag('totals', `charge ${h.id} is still pending at the orchestrator after settling`);
    }
  }

  /** From the orchestrator's audit trail: each charge captured or voided (succeeded) at most once, and as its status says. */
  async checkAuditResolutions(): Promise<void> {
    const read = async (action: string) => {
      const out: AuditEvent[] = [];
      for await (const e of auditEvents(this.orchestrator, testEnv.DB, this.human.principal_id, 0, { action, outcome: 'succeeded' })) out.push(e);
      return out;
    };
    const captures = await read('charge.capture');
    const voids = await read('charge.void');
    const count = new Map<string, { capture: number; void: number }>();
    for (const [kind, events] of [['capture', captures] as const, ['void', voids] as const]) {
      for (const e of events) {
        const c = count.get(e.target ?? '') ?? { capture: 0, void: 0 };
        c[kind]++;
        count.set(e.target ?? '', c);
      }
    }
    for (const s of this.sagas) {
      if (s.chargeId === null) continue;
      const c = count.get(s.chargeId) ?? { capture: 0, void: 0 };
      const expected = s.orchStatus === 'captured' ? { capture: 1, void: 0 } : s.orchStatus === 'voided' ? { capture: 0, void: 1 } : { capture: 0, void: 0 };
      if (c.capture !== expected.capture || c.void !== expected.void) this.flag('resolution', `charge ${s.chargeId} is ${s.orchStatus} but the audit trail records ${c.capture} capture(s) and ${c.void} void(s)`);
    }
  }

  report(families: Family[]): string[] {
    return this.problems.filter((p) => families.includes(p.family)).map((p) => `[${p.family}, batch ${p.batch}] ${p.what}`);
  }
}
