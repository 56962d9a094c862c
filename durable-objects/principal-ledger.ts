// One object per principal (at the orchestrator) or per account (at a
// provider): the single writer of everything that must not interleave for it.
// Every decision is one synchronous transaction, with no await inside, that
// also appends the audit event describing it. Deferred work (the copy of the
// audit outbox to D1, events owed to providers, sweeps) runs from one alarm.
import { DurableObject } from 'cloudflare:workers';
import type { JWK } from 'jose';
import { hashMatches, recordAuditEvent, sealAuditEvent, type AuditEntry, type AuditEvent, type RecordedAuditEvent } from '../workers/lib/audit';
import { insertAuditEvents, insertSignedHead, listAuditEvents } from '../workers/lib/audit-store';
import { signAuditHead, type SignedHead } from '../workers/lib/audit-heads';
import { newId } from '../workers/lib/ids';
import { deliverProviderEvent, type ProviderEventEnv } from '../workers/orchestrator/provider-events';
import { deliverWebhook } from '../workers/lib/webhooks';
import type { IdempotencyRecord } from '../workers/lib/idempotency';
import type { LedgerTask, LedgerTx } from './ledger/context';
import * as idempotency from './ledger/idempotency';
import * as mandates from './ledger/mandates';
import { noticeAfterCapture, noticeExpiringMandates } from './ledger/mandate-expiry';
import { consumeNonce, NONCE_SWEEP_MS, sweepNonces } from './ledger/nonces';
import { LEDGER_MIGRATIONS } from './ledger/schema';
import * as charges from './ledger/charges';
import { refuse } from './ledger/context';
import * as spend from './ledger/spend';
import * as disputes from './ledger/disputes';
import * as sagas from './ledger/sagas';
import * as tokens from './ledger/tokens';
import {
  accountLimitsUrl,
  deprovision,
  isAsync,
  renewalPrice,
  renewAtBackend,
  requestRenewal,
  resourceWire,
  revertPlan,
  runAsyncProvision,
  settleChargeCall,
  suspendAtBackend,
} from '../workers/provider/provisioning';
import * as renewals from './ledger/renewals';
import * as lifecycle from './ledger/lifecycle';
import * as outbox from './ledger/backend-outbox';
import * as planChanges from './ledger/plan-changes';

export type LedgerEnv = { DB: D1Database } & Partial<ProviderEventEnv>;
export type { IdempotencyStart, StoredResponse } from './ledger/idempotency';
export type { StoredAgent, StoredMandate, MandateTerms, Approval, Actor } from './ledger/mandates';

const OUTBOX_BATCH = 100;
/**
 * Events reach D1 in batches: the copy runs this long after the first event
 * of a batch. Readers merge the outbox, so nobody waits for it.
 */
const AUDIT_COPY_DELAY_MS = 2000;
/** A chain head is signed at most this long after the first event it covers. */
export const HEAD_SIGN_DELAY_MS = 60_000;
const RETRY_MAX_MS = 60_000;
/** How long a task's schedule row is pushed ahead while the task runs; a task still running then is not started twice. */
const TASK_LEASE_MS = 60_000;

export type AuditHead = { principal: string | null; seq: number; hash: string };
export type AuditSnapshot = { head: AuditHead; pending: AuditEvent[] };

export class PrincipalLedger extends DurableObject<LedgerEnv> {
  #sql: SqlStorage;
  /** When the alarm is set for, as far as this instance knows; null after a start or once it fired. */
  #armedFor: number | null = null;
  /** The earliest due time scheduled by the current transaction. */
  #earliestScheduled = Infinity;
  /**
   * What this instance knows the schedule table holds (task → due), so that a
   * transaction skips a write that would not move a task earlier. Forgotten
   * when a transaction fails (its writes were rolled back) and when a task runs.
   */
  #knownSchedule = new Map<LedgerTask, number>();
  /**
   * The chain's owner and its last recorded seq, once read: every event after the first in this
   * instance's life is numbered without reading the chain again. Forgotten with the schedule when a
   * transaction fails, since the events it recorded were rolled back.
   */
  #chainTip: { principal: string; seq: number } | null = null;
  /** Tasks running now: a task's awaits let other work in, and no task may run twice at once. */
  #running = new Set<LedgerTask>();
  /** For each running task, the earliest time anyone asked it to run again while it ran (Infinity: nobody). */
  #requestedWhileRunning = new Map<LedgerTask, number>();

  constructor(ctx: DurableObjectState, env: LedgerEnv) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    void ctx.blockConcurrencyWhile(async () => {
      // A migration may leave work due (a task to run once over old data): the alarm is pointed at it.
      if (this.#migrate()) await this.#armAlarm();
    });
  }

  // ── Audit chain ───────────────────────────────────────────────────────────

  /** Appends events to the chain, in order, in one transaction. */
  appendAuditEvents(principal: string, entries: AuditEntry[]): RecordedAuditEvent[] {
    return this.#transaction(principal, (tx) => entries.map((e) => tx.audit(e)));
  }

  appendAuditEvent(principal: string, entry: AuditEntry): RecordedAuditEvent {
    return this.appendAuditEvents(principal, [entry])[0]!;
  }

  /** The chain's head, past every event recorded so far. */
  auditHead(): AuditHead {
    return this.ctx.storage.transactionSync(() => this.#seal());
  }

  /**
   * The chain head and every event not yet known to be in D1, read together:
   * a reader that merges these with D1 sees every event committed before it asked.
   */
  auditSnapshot(afterSeq = 0): AuditSnapshot {
    return this.ctx.storage.transactionSync(() => ({
      head: this.#seal(),
      pending: this.#sql
        .exec<{ event: string }>('SELECT event FROM audit_outbox WHERE seq > ? ORDER BY seq', afterSeq)
        .toArray()
        .map((r) => JSON.parse(r.event) as AuditEvent),
    }));
  }

  /** Copies the outbox to D1 now (the alarm does the same); returns how many events remain. */
  async flushAuditOutbox(): Promise<number> {
    for (;;) {
      // Only chained events leave the object: what was recorded is chained first, in the same step.
      const head = this.auditHead();
      const batch = this.#sql.exec<{ seq: number; event: string }>('SELECT seq, event FROM audit_outbox WHERE seq <= ? ORDER BY seq LIMIT ?', head.seq, OUTBOX_BATCH).toArray();
      if (batch.length === 0) return 0;
      await insertAuditEvents(
        this.env.DB,
        batch.map((r) => JSON.parse(r.event) as AuditEvent),
      );
      this.#sql.exec('DELETE FROM audit_outbox WHERE seq <= ?', batch.at(-1)!.seq);
    }
  }

  // ── Idempotency records ──────────────────────────────────────────────────

  /**
   * Starts an idempotent request. A paid call's single-use values (its DPoP
   * proof's jti, its signature's nonce) are consumed in the same transaction,
   * first and all or none: one round trip instead of two on the paid path.
   */
  beginIdempotentRequest(scope: string, key: string, fingerprint: string, nonces: { nonce: string; expiresAtMs: number }[] = []): idempotency.IdempotencyStart | { state: 'nonce_seen'; index: number } {
    const seen = nonces.length ? this.consumeNonces(nonces) : -1;
    if (seen !== -1) return { state: 'nonce_seen', index: seen };
    return this.#transaction(null, (tx) => idempotency.begin(tx, scope, key, fingerprint));
  }

  completeIdempotentRequest(scope: string, key: string, fingerprint: string, response: idempotency.StoredResponse): void {
    idempotency.complete(this.#sql, scope, key, fingerprint, response);
  }

  abandonIdempotentRequest(scope: string, key: string, fingerprint: string): void {
    idempotency.abandon(this.#sql, scope, key, fingerprint);
  }

  /** True when `nonce` was never seen (and is now remembered until `expiresAtMs`). */
  consumeNonce(nonce: string, expiresAtMs: number): boolean {
    return this.#transaction(null, (tx) => consumeNonce(tx, nonce, expiresAtMs));
  }

  /** Several single-use values at once, all or none: the index of the first already seen, or -1. */
  consumeNonces(nonces: { nonce: string; expiresAtMs: number }[]): number {
    let seen = -1;
    try {
      this.#transaction(null, (tx) => {
        nonces.forEach((n, i) => {
          if (!consumeNonce(tx, n.nonce, n.expiresAtMs)) {
            seen = i;
            throw new Error('seen');
          }
        });
      });
    } catch (error) {
      if (seen === -1) throw error;
    }
    return seen;
  }

  // ── Agents and mandates (orchestrator) ───────────────────────────────────

  registerAgent(principal: string, input: { agent_id: string; name: string; public_jwk: JWK; key_thumbprint: string }) {
    return this.#transaction(principal, (tx) => mandates.registerAgent(tx, { ...input, via: 'principal' }, { type: 'principal', id: principal }));
  }

  authenticateAgent(principal: string, agentId: string, proofJti: string, action: string) {
    return this.#transaction(principal, (tx) => mandates.authenticateAgent(tx, agentId, proofJti, action));
  }

  revokeAgent(principal: string, agentId: string, actor: mandates.Actor) {
    return this.#transaction(principal, (tx) => mandates.revokeAgent(tx, agentId, actor));
  }

  getAgent(agentId: string) {
    return mandates.getAgent(this.#sql, agentId);
  }

  listAgents() {
    return mandates.listAgents(this.#sql);
  }

  createMandate(principal: string, input: Parameters<typeof mandates.createMandate>[1], actor?: mandates.Actor, options?: Parameters<typeof mandates.createMandate>[3]) {
    return this.#transaction(principal, (tx) => mandates.createMandate(tx, input, actor, options));
  }

  /** The requests waiting to supersede a mandate, the earliest (decided first) first. */
  waitingSuccessors(mandateId: string) {
    return mandates.waitingSuccessors(this.#sql, mandateId, Date.now());
  }

  getMandate(mandateId: string) {
    return mandates.getMandate(this.#sql, mandateId, Date.now());
  }

  listMandates(agentId?: string) {
    return mandates.listMandates(this.#sql, Date.now(), agentId);
  }

  /** An agent's read of its mandate, with what was charged under it (and those it supersedes) this period. */
  pollMandate(principal: string, mandateId: string, agentId: string, intervalS: number) {
    return this.#transaction(principal, (tx) => {
      const result = mandates.pollMandate(tx, mandateId, agentId, intervalS);
      return result.ok ? { ...result, spent: spend.spent(tx.sql, spend.billingPeriod(tx.now), `mandate:${result.mandate.root}`) } : result;
    });
  }

  approveMandate(principal: string, mandateId: string, approval: mandates.Approval) {
    return this.#transaction(principal, (tx) => mandates.approveMandate(tx, mandateId, approval, { type: 'principal', id: principal }));
  }

  approveFirstContact(principal: string, input: Parameters<typeof mandates.approveFirstContact>[1]) {
    return this.#transaction(principal, (tx) => mandates.approveFirstContact(tx, input, { type: 'principal', id: principal }));
  }

  denyMandate(principal: string, mandateId: string) {
    return this.#transaction(principal, (tx) => mandates.denyMandate(tx, mandateId, { type: 'principal', id: principal }));
  }

  revokeMandate(principal: string, mandateId: string) {
    return this.#transaction(principal, (tx) => mandates.revokeMandate(tx, mandateId, { type: 'principal', id: principal }));
  }

  authorizeAttestation(principal: string, input: Parameters<typeof mandates.authorizeAttestation>[1]) {
    return this.#transaction(principal, (tx) => mandates.authorizeAttestation(tx, input));
  }

  /** Events owed to providers and not yet acknowledged (for operators and tests). */
  pendingProviderEvents() {
    return mandates.dueProviderEvents(this.#sql, Number.MAX_SAFE_INTEGER);
  }

  // ── Charges and limits ───────────────────────────────────────────────────

  /** §3.1 step 3 at the orchestrator: every check and the hold, in one transaction. */
  authorizeCharge(principal: string, request: charges.ChargeRequest) {
    return this.#transaction(principal, (tx) => charges.authorizeCharge(tx, request));
  }

  captureCharge(principal: string, chargeId: string, actor: { type: 'provider' | 'system' | 'orchestrator'; id: string }, providerJti?: { jti: string; expiresMs: number }, receipt?: string, related: string[] = []) {
    return this.#transaction(principal, (tx) => {
      if (providerJti && !consumeNonce(tx, `provider:${actor.id}:${providerJti.jti}`, providerJti.expiresMs + 60_000)) return refuse('replayed', 'This provider request token was already used.');
      const captured = spend.captureHold(tx, chargeId, actor, receipt, related);
      if (captured.ok) noticeAfterCapture(tx, captured.hold);
      return captured;
    });
  }

  voidCharge(principal: string, chargeId: string, actor: { type: 'provider' | 'system' | 'orchestrator' | 'principal'; id: string }, reason: string, providerJti?: { jti: string; expiresMs: number }) {
    return this.#transaction(principal, (tx) => {
      if (providerJti && !consumeNonce(tx, `provider:${actor.id}:${providerJti.jti}`, providerJti.expiresMs + 60_000)) return refuse('replayed', 'This provider request token was already used.');
      return spend.voidHold(tx, chargeId, actor, reason);
    });
  }

  /** Part of a captured charge given back by its provider (a downgrade's credit), once per key. */
  refundChargePart(principal: string, chargeId: string, refund: spend.PartialRefund, actor: { type: 'provider'; id: string }, providerJti: { jti: string; expiresMs: number }) {
    return this.#transaction(principal, (tx) => {
      if (!consumeNonce(tx, `provider:${actor.id}:${providerJti.jti}`, providerJti.expiresMs + 60_000)) return refuse('replayed', 'This provider request token was already used.');
      const hold = spend.getHold(tx.sql, chargeId);
      // Only the provider that made the charge gives it back.
      if (!hold || hold.provider !== actor.id) return refuse('not_found', 'No such charge.');
      return spend.refundPart(tx, chargeId, refund, actor);
    });
  }

  getCharge(chargeId: string) {
    return spend.getHold(this.#sql, chargeId);
  }

  listCharges(filter: Parameters<typeof spend.listHolds>[1] = {}) {
    return spend.listHolds(this.#sql, filter);
  }

  /** This period's spend against the principal's limit and each active mandate's. */
  limitsSummary() {
    const period = spend.billingPeriod(Date.now());
    const own = spend.ownLimit(this.#sql);
    const rows = [{ scope: 'principal' as const, id: null as string | null, limit: own, spent: { amount: spend.spent(this.#sql, period, 'principal'), currency: own.currency }, period }];
    for (const m of mandates.listMandates(this.#sql, Date.now())) {
      if (m.status !== 'active' || !m.approved) continue;
      const root = mandates.mandateRoot(this.#sql, m.mandate_id)!;
      const limit = { amount: m.approved.spend_limit.amount, currency: m.approved.spend_limit.currency };
      rows.push({ scope: 'mandate' as never, id: m.mandate_id, limit, spent: { amount: spend.spent(this.#sql, period, `mandate:${root}`), currency: limit.currency }, period });
    }
    return rows;
  }

  ownLimit() {
    return spend.ownLimit(this.#sql);
  }

  setOwnLimit(principal: string, limit: { amount: number; currency: string }) {
    return this.#transaction(principal, (tx) => spend.setOwnLimit(tx, limit, { type: 'principal', id: principal }));
  }

  spentThisPeriod(scope = 'principal') {
    return spend.spent(this.#sql, spend.billingPeriod(Date.now()), scope);
  }

  listNotifications() {
    return this.#sql
      .exec<{ id: string; type: string; created: string; data: string }>('SELECT id, type, created, data FROM notifications ORDER BY created DESC, rowid DESC')
      .toArray()
      .map((n) => ({ ...n, data: JSON.parse(n.data) as unknown }));
  }

  addWebhookEndpoint(principal: string, endpoint: { id: string; url: string; secret: string }) {
    return this.#transaction(principal, (tx) => {
      tx.sql.exec('INSERT INTO webhook_endpoints (id, url, secret, created) VALUES (?, ?, ?, ?)', endpoint.id, endpoint.url, endpoint.secret, new Date(tx.now).toISOString());
      tx.audit({ actor: { type: 'principal', id: principal }, action: 'webhook_endpoint.create', target: endpoint.id, outcome: 'succeeded', related: [endpoint.url] });
      return { id: endpoint.id, url: endpoint.url };
    });
  }

  // ── Disputes (orchestrator) ──────────────────────────────────────────────

  recordDispute(principal: string, dispute: Omit<disputes.DisputeRecord, 'created'>) {
    return this.#transaction(principal, (tx) => disputes.recordDispute(tx, principal, dispute));
  }

  getDispute(disputeId: string) {
    return disputes.getDispute(this.#sql, disputeId);
  }

  listDisputes() {
    return disputes.listDisputes(this.#sql);
  }

  disputeOfCharge(chargeId: string) {
    return disputes.disputeOfCharge(this.#sql, chargeId);
  }

  /** Provider: a charge the orchestrator refunded (§2.5 charge.refunded) is reversed here too. */
  refundCharge(account: string, chargeId: string, reason: string) {
    return this.#transaction(account, (tx) => {
      const local = sagas.localHoldOf(tx.sql, chargeId);
      if (!local) return refuse('not_found', 'No hold here for this charge.');
      return spend.refundHold(tx, local, { type: 'orchestrator', id: 'refund' }, reason);
    });
  }

  // ── Provisioning sagas (provider) ────────────────────────────────────────

  beginSaga(account: string, start: sagas.SagaStart) {
    return this.#transaction(account, (tx) => sagas.beginSaga(tx, start));
  }

  /** `provisionLater`: an async creation, whose provisioning the alarm runs once the authorization is recorded. */
  recordAuthorization(account: string, sagaId: string, chargeId: string, decision: string, provisionLater = false) {
    return this.#transaction(account, (tx) => {
      const saga = sagas.recordAuthorization(tx, sagaId, chargeId, decision);
      if (provisionLater && saga?.state === 'authorized') tx.schedule('async_provision', tx.now);
      return saga;
    });
  }

  /**
   * Steps 4–5 of a saga. With `replay`, the paid call's Idempotency-Key record
   * is completed in the same transaction, with the answer a replay gives
   * (never the credentials): one round trip fewer on the paid path.
   */
  completeSaga(
    account: string,
    sagaId: string,
    result: Parameters<typeof sagas.completeSaga>[2],
    replay?: IdempotencyRecord & { credentials_shown: boolean },
    supersedes?: string,
  ) {
    return this.#transaction(account, (tx) => {
      const done = sagas.completeSaga(tx, sagaId, result);
      if (!done) return null;
      // The resource a redeploy replaces is retired with the completion: deleted, and its deprovision owed (durably, by the outbox).
      if (supersedes) lifecycle.beginDeprovision(tx, supersedes, { type: 'system', id: 'superseded' });
      const resource = sagas.getResource(tx.sql, done.saga.resource_id)!;
      if (replay) {
        const body = { ...resourceWire(resource), credentials: null, charge_id: done.saga.charge_id, audit_event_id: done.event.id, receipt: result.receipt, credentials_redacted: replay.credentials_shown };
        idempotency.complete(tx.sql, replay.scope, replay.key, replay.fingerprint, { status: 201, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      }
      return { ...done, resource };
    });
  }

  /**
   * `answerLost`: the orchestrator may have authorized without its answer arriving; its charge is then found by the
   * saga's key and voided. `authorization`: the charge the orchestrator authorized, not recorded yet, voided by its id.
   */
  voidSaga(account: string, sagaId: string, reason: string, answerLost = false, authorization?: sagas.Authorization) {
    return this.#transaction(account, (tx) => sagas.voidSaga(tx, sagaId, reason, answerLost, authorization));
  }

  beginUpdate(account: string, start: planChanges.UpdateStart) {
    return this.#transaction(account, (tx) => planChanges.beginUpdate(tx, start));
  }

  completeUpdate(account: string, sagaId: string, result: { fields: string; receipt: string }) {
    return this.#transaction(account, (tx) => planChanges.completeUpdate(tx, sagaId, result));
  }

  /** A retried PATCH whose Idempotency-Key record was lost: the outcome of its saga. */
  updateOutcome(saga: sagas.Saga) {
    return planChanges.updateOutcome(this.#sql, saga);
  }

  getSaga(sagaId: string) {
    return sagas.getSaga(this.#sql, sagaId);
  }

  sagaOfCharge(chargeId: string) {
    return this.#sql.exec<sagas.Saga>('SELECT * FROM sagas WHERE charge_id = ?', chargeId).toArray()[0] ?? null;
  }

  liveSagaFor(requestKey: string) {
    return sagas.sagaForRequestKey(this.#sql, requestKey, Date.now());
  }

  /**
   * An agent reads its own operation; the first read after success carries the credentials,
   * once (§3.1). Another agent of the account learns nothing and takes nothing.
   */
  readOperation(account: string, sagaId: string, agentId: string) {
    return this.#transaction(account, (tx) => {
      const saga = sagas.getSaga(tx.sql, sagaId);
      if (!saga || saga.agent_id !== agentId) return null;
      const credentials = saga.state === 'completed' ? sagas.takeCredentials(tx, sagaId) : null;
      return { saga, resource: sagas.getResource(tx.sql, saga.resource_id), credentials };
    });
  }

  getResource(resourceId: string) {
    return sagas.getResource(this.#sql, resourceId);
  }

  listResources() {
    return sagas.listResources(this.#sql);
  }

  pendingChargeCalls() {
    return sagas.pendingChargeCalls(this.#sql);
  }

  beginDeprovision(account: string, resourceId: string, actor: lifecycle.Actor, servicesInScope?: string[]) {
    return this.#transaction(account, (tx) => lifecycle.beginDeprovision(tx, resourceId, actor, servicesInScope));
  }

  /** The backend confirmed the delete the request made at once; the alarm owes nothing more. */
  confirmDeprovision(account: string, resourceId: string) {
    this.#transaction(account, (tx) => {
      const owed = outbox.owedTo(tx.sql, outbox.DEPROVISIONS, resourceId);
      if (owed) outbox.settledWith(tx, outbox.DEPROVISIONS, owed, true);
    });
  }

  /** The request's own deprovision failed: audited, and left to the alarm's retries. */
  deprovisionDeferred(account: string, resourceId: string, error: string) {
    this.#transaction(account, (tx) => {
      const owed = outbox.owedTo(tx.sql, outbox.DEPROVISIONS, resourceId);
      if (owed) outbox.failedAt(tx, outbox.DEPROVISIONS, owed, error);
    });
  }

  checkRotatable(account: string, resourceId: string, actor: lifecycle.Actor) {
    return this.#transaction(account, (tx) => lifecycle.checkRotatable(tx, resourceId, actor));
  }

  recordRotation(account: string, resourceId: string, fields: string, actor: lifecycle.Actor) {
    return this.#transaction(account, (tx) => lifecycle.recordRotation(tx, resourceId, fields, actor));
  }

  usageThisPeriod() {
    const period = spend.billingPeriod(Date.now());
    return this.#sql
      .exec<{ scope: string; amount: number }>(`SELECT scope, amount FROM spend_totals WHERE period = ? AND scope LIKE 'service:%'`, period)
      .toArray()
      .map((r) => ({ service: r.scope.slice('service:'.length), amount: r.amount }));
  }

  // ── Tokens (provider) ────────────────────────────────────────────────────

  recordTokenIssue(account: string, issue: tokens.TokenIssue) {
    return this.#transaction(account, (tx) => tokens.recordTokenIssue(tx, issue));
  }

  recordRefusal(principal: string, refusal: Parameters<typeof tokens.recordRefusal>[1]) {
    this.#transaction(principal, (tx) => tokens.recordRefusal(tx, refusal));
  }

  /**
   * A refusal recorded once per `key` until `expiresAtMs` (the refused uses of one access token: whoever holds a
   * stolen one cannot write to the trail on every request).
   */
  recordRefusalOnce(principal: string, key: string, expiresAtMs: number, refusal: Parameters<typeof tokens.recordRefusal>[1]) {
    this.#transaction(principal, (tx) => {
      if (consumeNonce(tx, key, expiresAtMs)) tokens.recordRefusal(tx, refusal);
    });
  }

  // ── The alarm ────────────────────────────────────────────────────────────

  /** Runs every due task once; each task is idempotent because alarms run at least once. */
  override async alarm(): Promise<void> {
    this.#armedFor = null;
    const now = Date.now();
    const due = this.#sql.exec<{ task: LedgerTask }>('SELECT task FROM schedule WHERE due_at <= ?', now).toArray();
    for (const { task } of due) {
      if (this.#running.has(task)) {
        this.#scheduleRow(task, now + 200);
        continue;
      }
      // The row stays, a lease ahead, until the task has run: an object reset in the middle of
      // it (a deploy, an eviction) runs it again rather than forgetting it.
      const lease = Date.now() + TASK_LEASE_MS;
      this.#sql.exec('UPDATE schedule SET due_at = ? WHERE task = ?', lease, task);
      this.#knownSchedule.set(task, lease);
      this.#running.add(task);
      this.#requestedWhileRunning.set(task, Infinity);
      let again: number;
      try {
        await this.#runTask(task);
        this.#setMeta(`retry:${task}`, '0');
        again = this.#requestedWhileRunning.get(task)!;
      } catch (error) {
        const attempts = Number(this.#getMeta(`retry:${task}`) ?? '0') + 1;
        this.#setMeta(`retry:${task}`, String(attempts));
        const delay = Math.min(RETRY_MAX_MS, 500 * 2 ** attempts);
        console.warn(JSON.stringify({ level: 'warn', message: `ledger task ${task} failed, retrying`, attempts, error: String(error) }));
        again = Math.min(Date.now() + delay, this.#requestedWhileRunning.get(task)!);
      } finally {
        this.#running.delete(task);
        this.#requestedWhileRunning.delete(task);
      }
      this.#finishTask(task, again);
    }
    await this.#armAlarm();
  }

  async #runTask(task: LedgerTask): Promise<void> {
    switch (task) {
      case 'audit_outbox':
        await this.flushAuditOutbox();
        return;
      case 'idempotency_sweep':
        if (idempotency.sweep(this.#sql, Date.now()) > 0) this.#scheduleRow(task, Date.now() + idempotency.SWEEP_MS);
        return;
      case 'nonce_sweep':
        if (sweepNonces(this.#sql, Date.now()) > 0) this.#scheduleRow(task, Date.now() + NONCE_SWEEP_MS);
        return;
      case 'provider_events':
        await this.#deliverProviderEvents();
        return;
      case 'hold_expiry':
        this.#expireHolds();
        return;
      case 'webhooks':
        await this.#deliverWebhooks();
        return;
      case 'saga_recovery':
        await this.#recoverSagas();
        return;
      case 'charge_outbox':
        await this.#settleChargeCalls();
        return;
      case 'async_provision':
        await this.#runAsyncProvisioning();
        return;
      case 'renewals':
        await this.#runRenewals();
        return;
      case 'mandate_expiry':
        this.#noticeExpiringMandates();
        return;
      case 'backend_renewals':
        await this.#drainOutbox(outbox.BACKEND_RENEWALS, this.#renewAtBackend);
        return;
      case 'sign_head':
        await this.#signHead();
        return;
      case 'deprovisions':
        await this.#drainOutbox(outbox.DEPROVISIONS, this.#deprovisionAtBackend);
        return;
      case 'unclaimed_credentials':
        this.#dropUnclaimedCredentials();
        return;
    }
  }

  /** §2.5: each event is signed and posted until the provider answers 2xx; every attempt is audited. */
  async #deliverProviderEvents(): Promise<void> {
    const principal = this.#chainOwner();
    for (const event of mandates.dueProviderEvents(this.#sql, Date.now())) {
      let outcome: { delivered: boolean; detail: string };
      try {
        outcome = await deliverProviderEvent(this.env as ProviderEventEnv, principal ?? 'unknown', event);
      } catch (error) {
        outcome = { delivered: false, detail: String(error) };
      }
      this.#transaction(principal, (tx) => {
        tx.audit({
          actor: { type: 'orchestrator', id: 'self' },
          action: 'provider_event.deliver',
          target: event.provider_id,
          outcome: outcome.delivered ? 'succeeded' : 'failed',
          reason: outcome.delivered ? null : outcome.detail.slice(0, 200),
          mandate_id: typeof event.payload.mandate_id === 'string' ? event.payload.mandate_id : null,
          related: [event.type],
        });
        if (outcome.delivered) tx.sql.exec('DELETE FROM provider_events WHERE id = ?', event.id);
        else {
          const backoff = Math.min(60 * 60 * 1000, 1000 * 2 ** Math.min(event.attempts, 12));
          tx.sql.exec('UPDATE provider_events SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?', Date.now() + backoff, event.id);
        }
      });
    }
    const next = mandates.nextProviderEventDue(this.#sql);
    if (next !== null) this.#scheduleRow('provider_events', next);
  }

  /**
   * Sagas past their deadline were interrupted (a crash, a lost response).
   * Whatever was provisioned is taken down and both holds are voided; a
   * saga that completed meanwhile is left alone.
   */
  async #recoverSagas(): Promise<void> {
    const account = this.#chainOwner();
    if (account === null) return;
    for (const saga of sagas.openSagasPastDeadline(this.#sql, Date.now())) {
      const synchronous = !isAsync(this.env as never, saga.service);
      if (!sagas.mayHaveProvisioned(saga, synchronous)) {
        // Nothing was made: the local hold is voided. The orchestrator may have been asked: a charge it authorized
        // is voided when its answer is recorded, or found by the saga's key if that answer never comes.
        this.#transaction(account, (tx) => sagas.voidSaga(tx, saga.id, 'recovered:reserved', true));
        continue;
      }
      // Taken down before it is voided (a synchronous creation still `reserved` included); a charge not recorded is found by the saga's key.
      const claimed = this.#transaction(account, (tx) => sagas.claimForRecovery(tx, saga.id, synchronous));
      if (!claimed) continue;
      try {
        if (claimed.kind === 'update') {
          // A plan change is never taken down: the backend may have switched already, so it switches back.
          const resource = sagas.getResource(this.#sql, claimed.resource_id);
          if (resource?.status === 'active' && resource.plan === claimed.previous_plan) await revertPlan(this.env as never, account, claimed, resource);
        } else await deprovision(this.env as never, account, claimed);
        // Without a charge id (an authorization never recorded, or none made), the charge is looked up by the saga's key.
        this.#transaction(account, (tx) => sagas.voidSaga(tx, claimed.id, sagas.getSaga(tx.sql, claimed.id)?.charge_id ? 'recovered:authorized' : 'recovered:reserved', true));
      } catch (error) {
        // This one waits for the backend; the others are not held up by it.
        this.#transaction(account, (tx) => sagas.postponeRecovery(tx, claimed.id, `recovery: ${String(error)}`));
      }
    }
    const next = sagas.nextSagaDeadline(this.#sql);
    if (next !== null) this.#scheduleRow('saga_recovery', next);
  }

  /**
   * One piece of work owed to a service backend (backend-outbox.ts), done now. `act` returns what to record as it is
   * settled, or null when there was nothing left to do; if it throws, the work is tried again later.
   */
  async #doOwed<T extends outbox.Owed>(account: string, box: outbox.BackendOutbox, owed: T, act: (account: string, owed: T) => Promise<((tx: LedgerTx) => void) | null>) {
    let done: ((tx: LedgerTx) => void) | null;
    try {
      done = await act(account, owed);
    } catch (error) {
      this.#transaction(account, (tx) => outbox.failedAt(tx, box, owed, String(error)));
      return;
    }
    this.#transaction(account, (tx) => {
      outbox.settledWith(tx, box, owed, done !== null);
      done?.(tx);
    });
  }

  /** The work owed to service backends that is due, tried again until each backend confirms. */
  async #drainOutbox<T extends outbox.Owed>(box: outbox.BackendOutbox, act: (account: string, owed: T) => Promise<((tx: LedgerTx) => void) | null>) {
    const account = this.#chainOwner();
    if (account === null) return;
    for (const owed of outbox.dueTo<T>(this.#sql, box, Date.now())) await this.#doOwed(account, box, owed, act);
    const next = outbox.nextDueTo(this.#sql, box);
    if (next !== null) this.#scheduleRow(box.task, next);
  }

  /** A delete a request could not finish with the backend. */
  #deprovisionAtBackend = async (account: string, owed: lifecycle.OwedDeprovision) => {
    await deprovision(this.env as never, account, owed);
    return () => {};
  };

  /** A paid renewal at its backend: it extends what it keeps (a domain's expiry) and lifts a suspension; a resource no longer active is owed nothing. */
  #renewAtBackend = async (account: string, owed: outbox.Owed) => {
    const resource = sagas.getResource(this.#sql, owed.resource_id);
    if (resource?.status !== 'active') return null;
    const fields = await renewAtBackend(this.env as never, account, resource);
    return (tx: LedgerTx) => renewals.recordRenewedFields(tx, resource.id, fields);
  };

  /** Captures and voids owed to the orchestrator, retried with backoff until it answers. */
  async #settleChargeCalls(): Promise<void> {
    const account = this.#chainOwner();
    if (account === null) return;
    for (const call of sagas.dueChargeCalls(this.#sql, Date.now())) {
      try {
        const saga = call.saga_id.startsWith('renewal:') ? null : sagas.getSaga(this.#sql, call.saga_id);
        const holdId = call.saga_id.startsWith('renewal:') ? call.saga_id.split(':')[2]! : saga?.hold_id;
        const receipt = holdId ? (spend.getHold(this.#sql, holdId)?.receipt ?? null) : null;
        const outcome = await settleChargeCall(this.env as never, account, call, { receipt, eventId: call.action === 'capture' ? (saga?.audit_event_id ?? null) : null });
        if (outcome === 'voided_remotely' && call.saga_id.startsWith('renewal:')) {
          // A renewal the orchestrator voided before it was captured: refund here, suspend, and try it again.
          const [, resourceId, holdId] = call.saga_id.split(':') as [string, string, string];
          const suspended = this.#transaction(account, (tx) => {
            tx.sql.exec('DELETE FROM charge_outbox WHERE id = ?', call.id);
            return renewals.renewalVoided(tx, resourceId, holdId) ? sagas.getResource(tx.sql, resourceId) : null;
          });
          if (suspended) await this.#suspendAtBackend(account, suspended);
        } else if (outcome === 'voided_remotely' && saga?.kind === 'update') {
          // A plan change whose capture came too late: the resource goes back to its old plan, nothing is charged or credited.
          const resource = sagas.getResource(this.#sql, saga.resource_id);
          const fields = resource && planChanges.stillChangedBy(resource, saga) ? await revertPlan(this.env as never, account, saga, resource) : null;
          this.#transaction(account, (tx) => {
            planChanges.revertUpdate(tx, saga.id, fields === null ? null : JSON.stringify(fields));
            tx.sql.exec('DELETE FROM charge_outbox WHERE id = ?', call.id);
          });
        } else if (outcome === 'settled' && call.action === 'capture' && saga?.kind === 'update') {
          this.#transaction(account, (tx) => {
            planChanges.grantCredit(tx, saga);
            tx.sql.exec('DELETE FROM charge_outbox WHERE id = ?', call.id);
          });
        } else if (outcome === 'refused') {
          // A refund the orchestrator will never take (the charge was refunded or disputed meanwhile): said in the trail, not retried.
          this.#transaction(account, (tx) => {
            tx.audit({ actor: { type: 'system', id: 'plan-change' }, action: 'charge.refund', target: call.charge_id, outcome: 'failed', reason: 'refused_by_orchestrator', related: [call.saga_id] });
            tx.sql.exec('DELETE FROM charge_outbox WHERE id = ?', call.id);
          });
        } else if (outcome === 'voided_remotely') {
          // §3.1 step 4: a capture after a void is refused; the provider deprovisions and refunds its own hold.
          const saga = sagas.getSaga(this.#sql, call.saga_id);
          if (saga) await deprovision(this.env as never, account, saga);
          this.#transaction(account, (tx) => {
            if (saga) {
              tx.sql.exec(`UPDATE resources SET status = 'deleted', updated = ? WHERE id = ?`, new Date(tx.now).toISOString(), saga.resource_id);
              spend.refundHold(tx, saga.hold_id, { type: 'system', id: 'saga' }, 'charge_voided_at_orchestrator');
            }
            tx.sql.exec('DELETE FROM charge_outbox WHERE id = ?', call.id);
          });
        } else if (outcome === 'settled') {
          this.#sql.exec('DELETE FROM charge_outbox WHERE id = ?', call.id);
        } else {
          this.#retryChargeCall(call);
        }
      } catch (error) {
        // A backend that fails (a deprovision, a plan switched back) delays this call only, never the ones after it.
        console.warn(JSON.stringify({ level: 'warn', message: 'charge call follow-up failed, retrying', charge_id: call.charge_id, error: String(error) }));
        this.#retryChargeCall(call);
      }
    }
    const next = this.#sql.exec<{ due: number | null }>('SELECT MIN(next_attempt_at) AS due FROM charge_outbox').one().due;
    if (next !== null) this.#scheduleRow('charge_outbox', next);
  }

  /** An owed call goes again later, backing off to a minute between tries. */
  #retryChargeCall(call: sagas.OwedChargeCall): void {
    this.#sql.exec('UPDATE charge_outbox SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?', Date.now() + Math.min(60_000, 500 * 2 ** call.attempts), call.id);
  }

  /** Signs the current chain head if it moved since the last signed one, and copies it to D1. */
  async #signHead(): Promise<void> {
    const head = this.auditHead();
    if (head.principal === null || head.seq === 0) return;
    const last = this.#sql.exec<{ seq: number }>('SELECT MAX(seq) AS seq FROM signed_heads').one().seq;
    if (last !== null && last >= head.seq) return;
    await this.#signAt(head.principal, head.seq, head.hash);
  }

  /** Signs (principal, seq, hash) now, keeps the head, and copies it to D1. */
  async #signAt(principal: string, seq: number, hash: string): Promise<SignedHead> {
    const signed = await signAuditHead(this.env as never, { principal, seq, hash });
    this.#sql.exec('INSERT OR IGNORE INTO signed_heads (seq, hash, time, jws) VALUES (?, ?, ?, ?)', seq, hash, signed.time, signed.jws);
    await insertSignedHead(this.env.DB, { principal, seq, hash, time: signed.time, jws: signed.jws });
    return { seq, hash, time: signed.time, jws: signed.jws };
  }

  /** Signed heads, newest first. */
  signedHeads(limit = 20) {
    return this.#sql.exec<SignedHead>('SELECT seq, hash, time, jws FROM signed_heads ORDER BY seq DESC LIMIT ?', limit).toArray();
  }

  /**
   * The first signed head at or after `seq`: the nearest one that covers that event (evidence chain proofs).
   * When none does yet (the alarm signs within a minute), the head is signed now.
   */
  async headCovering(seq: number) {
    const covering = () =>
      this.#sql.exec<SignedHead>('SELECT seq, hash, time, jws FROM signed_heads WHERE seq >= ? ORDER BY seq ASC LIMIT 1', seq).toArray()[0] ?? null;
    const known = covering();
    if (known) return known;
    await this.#signHead();
    return covering();
  }

  /**
   * Heads signed at events of the chain (evidence shows an event alone with its own head, §5, proven by this
   * role's key without the events around it): the one signed there already, or one signed now. Only for an
   * event the chain holds with that hash, so a copy edited in D1 (where the caller read it) gets none.
   */
  async headsAt(events: { seq: number; hash: string }[]): Promise<SignedHead[]> {
    const head = this.auditHead();
    const principal = head.principal;
    if (principal === null) return [];
    const heads: SignedHead[] = [];
    for (const event of events) {
      const known = this.#sql.exec<SignedHead>('SELECT seq, hash, time, jws FROM signed_heads WHERE seq = ?', event.seq).toArray()[0];
      if (known) {
        if (known.hash === event.hash) heads.push(known);
        continue;
      }
      if (!(await this.#chainHolds(event, head))) continue;
      heads.push(await this.#signAt(principal, event.seq, event.hash));
    }
    return heads;
  }

  /**
   * Whether the chain holds the event at `seq` with `hash`. The object keeps the hashes of its outbox and its
   * head only: an event copied to D1 is relinked, through D1's copies of the events after it, to the nearest
   * point the object vouches for (the first head it signed after it, the outbox's first link, or the head).
   * Heads are signed within a minute of an event, so the run read is a minute's events at most.
   */
  async #chainHolds(event: { seq: number; hash: string }, head: AuditHead): Promise<boolean> {
    if (!Number.isInteger(event.seq) || event.seq < 1 || event.seq > head.seq) return false;
    // Within the chain as `head` read it: events recorded since (during this call's awaits) are not chained yet.
    const outbox = this.#sql
      .exec<{ seq: number; event: string }>('SELECT seq, event FROM audit_outbox WHERE seq >= ? AND seq <= ? ORDER BY seq LIMIT 1', event.seq, head.seq)
      .toArray()[0];
    const first = outbox && (JSON.parse(outbox.event) as AuditEvent);
    if (first?.seq === event.seq) return first.hash === event.hash;
    const signedAfter = this.#sql.exec<{ seq: number; hash: string }>('SELECT seq, hash FROM signed_heads WHERE seq > ? ORDER BY seq LIMIT 1', event.seq).toArray()[0];
    const candidates = [
      signedAfter,
      first && { seq: first.seq - 1, hash: first.prev_hash },
      { seq: head.seq, hash: head.hash },
    ].filter((c): c is { seq: number; hash: string } => !!c);
    const anchor = candidates.reduce((nearest, c) => (c.seq < nearest.seq ? c : nearest));
    let link = { seq: event.seq, hash: event.hash };
    while (link.seq < anchor.seq) {
      const run = await listAuditEvents(this.env.DB, head.principal!, { afterSeq: link.seq, maxSeq: anchor.seq, limit: 500 });
      if (run.length === 0) return false;
      for (const next of run) {
        if (next.seq !== link.seq + 1 || next.prev_hash !== link.hash || !hashMatches(next)) return false;
        link = { seq: next.seq, hash: next.hash };
      }
    }
    return link.hash === anchor.hash;
  }

  /** Signs the head now (the alarm does it within a minute of a change). */
  async signHeadNow(): Promise<void> {
    await this.#signHead();
  }

  /** Recurring plans due to renew: the same charge path, or suspension when it does not fit (§3.2). */
  async #runRenewals(): Promise<void> {
    const account = this.#chainOwner();
    if (account === null) return;
    for (const id of renewals.dueRenewals(this.#sql, Date.now())) {
      // Read now, not with the list: an earlier renewal's awaits let a plan change complete meanwhile, which moves the
      // plan and the charge a renewal names (the orchestrator refuses to renew a replaced one). From here to the
      // reserve is synchronous.
      const resource = sagas.getResource(this.#sql, id);
      if (!resource || !renewals.renewable(resource) || resource.renews_at === null || resource.renews_at > Date.now()) continue;
      // The creation's saga says who pays (mandate, orchestrator, subject); the resource says what: its plan now.
      const saga = this.#sql.exec<sagas.Saga>(`SELECT * FROM sagas WHERE resource_id = ? AND kind = 'create' ORDER BY created LIMIT 1`, resource.id).toArray()[0];
      if (!saga) continue;
      const holdId = `hld_rnw${crypto.randomUUID().replaceAll('-', '').slice(0, 20)}`;
      const price = renewalPrice(this.env as never, resource) ?? { amount: saga.amount, currency: saga.currency };
      const reserved = this.#transaction(account, (tx) => renewals.reserveRenewal(tx, resource.id, holdId, price, accountLimitsUrl(this.env as never)));
      if (!reserved.ok) {
        if (reserved.suspended) await this.#suspendAtBackend(account, resource);
        continue;
      }
      const outcome = await requestRenewal(this.env as never, saga, resource, holdId, price);
      const after = this.#transaction(account, (tx) => {
        let suspended = false;
        if (outcome.kind === 'authorized') renewals.completeRenewal(tx, resource.id, holdId, { chargeId: outcome.charge_id, receipt: outcome.receipt, renewsAt: outcome.renews_at }, saga.orchestrator);
        else if (outcome.kind === 'declined') suspended = renewals.declineRenewal(tx, resource.id, holdId, outcome.code, outcome.step_up_url);
        else if (outcome.kind === 'not_due') renewals.deferRenewal(tx, resource.id, holdId, outcome.renews_at);
        else renewals.postponeRenewal(tx, resource.id, holdId, saga);
        return { resource: sagas.getResource(tx.sql, resource.id), suspended };
      });
      if (after.suspended) await this.#suspendAtBackend(account, after.resource!);
      // A paid renewal extends what the backend keeps, and lifts a suspension: owed to it (completeRenewal), done now.
      const owed = outcome.kind === 'authorized' ? outbox.owedTo(this.#sql, outbox.BACKEND_RENEWALS, resource.id) : undefined;
      if (owed) await this.#doOwed(account, outbox.BACKEND_RENEWALS, owed, this.#renewAtBackend);
    }
    const next = renewals.nextRenewalDue(this.#sql);
    if (next !== null) this.#scheduleRow('renewals', next);
  }


  /**
   * §3.2: a suspended resource keeps its data but stops costing (serving, writes): the backend is told.
   * A backend that fails is said in the trail; the resource stays suspended in the ledger either way.
   */
  async #suspendAtBackend(account: string, resource: sagas.Resource): Promise<void> {
    try {
      await suspendAtBackend(this.env as never, account, resource);
    } catch (error) {
      this.#transaction(account, (tx) => tx.audit({ actor: { type: 'system', id: 'renewal' }, action: 'resource.suspend', target: resource.id, outcome: 'failed', reason: String(error).slice(0, 200) }));
    }
  }

  async #runAsyncProvisioning(): Promise<void> {
    const account = this.#chainOwner();
    if (account === null) return;
    // Creations only: an authorized plan change is finished by its own request or undone by recovery.
    const ready = this.#sql.exec<sagas.Saga>(`SELECT * FROM sagas WHERE state = 'authorized' AND kind = 'create' ORDER BY created LIMIT 10`).toArray();
    for (const saga of ready) await runAsyncProvision(this.env as never, account, saga);
  }

  #dropUnclaimedCredentials(): void {
    const account = this.#chainOwner();
    if (account === null) return;
    this.#transaction(account, (tx) => {
      const next = sagas.dropUnclaimedCredentials(tx);
      if (next !== null) tx.schedule('unclaimed_credentials', next);
    });
  }

  /** The human told of recurring plans that will not renew past their mandate's end (mandate-expiry.ts). */
  #noticeExpiringMandates(): void {
    const principal = this.#chainOwner();
    if (principal === null) return;
    this.#transaction(principal, (tx) => {
      const next = noticeExpiringMandates(tx);
      if (next !== null) tx.schedule('mandate_expiry', next);
    });
  }

  /** Pending holds past their deadline are voided (alarms run at least once: voiding twice is a no-op). */
  #expireHolds(): void {
    const principal = this.#chainOwner();
    if (principal === null) return;
    this.#transaction(principal, (tx) => {
      for (const hold of spend.expiredHolds(tx.sql, tx.now)) spend.voidHold(tx, hold.id, { type: 'system', id: 'hold-expiry' }, 'expired');
      const next = spend.nextHoldExpiry(tx.sql);
      if (next !== null) tx.schedule('hold_expiry', next);
    });
  }

  /** Webhooks (PROTOCOL.md "Webhooks"): signed, retried with backoff until 2xx, each attempt audited. */
  async #deliverWebhooks(): Promise<void> {
    const principal = this.#chainOwner();
    const due = this.#sql
      .exec<{ id: number; endpoint_id: string; event: string; attempts: number; url: string; secret: string }>(
        `SELECT d.id, d.endpoint_id, d.event, d.attempts, e.url, e.secret FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id
         WHERE d.next_attempt_at <= ? ORDER BY d.id LIMIT 50`,
        Date.now(),
      )
      .toArray();
    for (const delivery of due) {
      const outcome = await deliverWebhook(delivery.url, delivery.secret, delivery.event);
      this.#transaction(principal, (tx) => {
        tx.audit({
          actor: { type: 'orchestrator', id: 'self' },
          action: 'webhook.deliver',
          target: delivery.endpoint_id,
          outcome: outcome.delivered ? 'succeeded' : 'failed',
          reason: outcome.delivered ? null : outcome.detail.slice(0, 200),
          related: [(JSON.parse(delivery.event) as { id: string }).id],
        });
        if (outcome.delivered || delivery.attempts >= 15) tx.sql.exec('DELETE FROM webhook_deliveries WHERE id = ?', delivery.id);
        else tx.sql.exec('UPDATE webhook_deliveries SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ?', Date.now() + Math.min(3_600_000, 1000 * 2 ** delivery.attempts), delivery.id);
      });
    }
    const next = this.#sql.exec<{ due: number | null }>('SELECT MIN(next_attempt_at) AS due FROM webhook_deliveries').one().due;
    if (next !== null) this.#scheduleRow('webhooks', next);
  }

  // ── Plumbing ─────────────────────────────────────────────────────────────

  /**
   * Runs `body` in one synchronous transaction with the audit chain of
   * `principal` (null for work that writes no event), then points the alarm
   * at the earliest due task.
   */
  #transaction<T>(principal: string | null, body: (tx: LedgerTx) => T): T {
    let scheduled = false;
    this.#earliestScheduled = Infinity;
    let result: T;
    try {
      result = this.ctx.storage.transactionSync(() => {
        const tx: LedgerTx = {
          sql: this.#sql,
          now: Date.now(),
          audit: (entry) => {
            if (principal === null) throw new Error('this ledger call records no audit events');
            scheduled = true;
            this.#scheduleRow('audit_outbox', Date.now() + AUDIT_COPY_DELAY_MS);
            this.#scheduleRow('sign_head', Date.now() + HEAD_SIGN_DELAY_MS);
            return this.#append(principal, entry);
          },
          schedule: (task, dueAt) => {
            scheduled = true;
            this.#scheduleRow(task, dueAt);
          },
        };
        return body(tx);
      });
    } catch (error) {
      this.#knownSchedule.clear();
      this.#chainTip = null;
      throw error;
    }
    // The alarm only moves when this transaction scheduled something earlier than it is set for.
    if (scheduled && (this.#armedFor === null || this.#earliestScheduled < this.#armedFor)) void this.#armAlarm();
    return result;
  }

  /**
   * Records an event in the outbox at the chain's next seq. Its hash waits for `#seal`, which runs
   * before any event leaves the object (the D1 copy, a read of the trail, a signed head), so a
   * state change pays for one row, not for hashing and a second write to the head.
   */
  #append(principal: string, entry: AuditEntry): RecordedAuditEvent {
    this.#chainTip ??= this.#readChainTip(principal);
    if (this.#chainTip.principal !== principal) throw new Error(`ledger of ${this.#chainTip.principal} asked to record for ${principal}`);
    const event = recordAuditEvent(entry, { seq: this.#chainTip.seq + 1, principal, id: newId('evt'), time: new Date().toISOString() });
    this.#sql.exec('INSERT INTO audit_outbox (seq, event) VALUES (?, ?)', event.seq, JSON.stringify(event));
    this.#chainTip.seq = event.seq;
    return event;
  }

  /** The chain's last seq (sealed or not), claiming the chain for `principal` if no one owns it yet. */
  #readChainTip(principal: string): { principal: string; seq: number } {
    const last = this.#sql
      .exec<{ principal: string | null; seq: number }>('SELECT principal, MAX(seq, COALESCE((SELECT MAX(seq) FROM audit_outbox), 0)) AS seq FROM audit_head')
      .one();
    if (last.principal === null) this.#sql.exec('UPDATE audit_head SET principal = ?', principal);
    return { principal: last.principal ?? principal, seq: last.seq };
  }

  /** Chains the events recorded since the head, in seq order, and moves the head past them (inside a transaction). */
  #seal(): AuditHead {
    const head = this.#sql.exec<AuditHead>('SELECT principal, seq, hash FROM audit_head').one();
    const recorded = this.#sql.exec<{ seq: number; event: string }>('SELECT seq, event FROM audit_outbox WHERE seq > ? ORDER BY seq', head.seq).toArray();
    if (recorded.length === 0) return { principal: head.principal, seq: head.seq, hash: head.hash };
    let hash = head.hash;
    for (const row of recorded) {
      const event = sealAuditEvent(JSON.parse(row.event) as RecordedAuditEvent, hash);
      this.#sql.exec('UPDATE audit_outbox SET event = ? WHERE seq = ?', JSON.stringify(event), row.seq);
      hash = event.hash;
    }
    const seq = recorded.at(-1)!.seq;
    this.#sql.exec('UPDATE audit_head SET seq = ?, hash = ?', seq, hash);
    return { principal: head.principal, seq, hash };
  }

  /** Whose chain this object keeps (null before its first event). */
  #chainOwner(): string | null {
    return this.#chainTip?.principal ?? this.#sql.exec<{ principal: string | null }>('SELECT principal FROM audit_head').one().principal;
  }

  #scheduleRow(task: LedgerTask, dueAt: number): void {
    this.#earliestScheduled = Math.min(this.#earliestScheduled, dueAt);
    // A running task's row holds its lease; when it ends, the row takes the earliest time asked meanwhile.
    const running = this.#requestedWhileRunning.get(task);
    if (running !== undefined) {
      this.#requestedWhileRunning.set(task, Math.min(running, dueAt));
      return;
    }
    const known = this.#knownSchedule.get(task);
    if (known !== undefined && known <= dueAt) return;
    this.#sql.exec('INSERT INTO schedule (task, due_at) VALUES (?, ?) ON CONFLICT (task) DO UPDATE SET due_at = MIN(due_at, excluded.due_at) WHERE excluded.due_at < due_at', task, dueAt);
    // The row is now due no later than dueAt (it may have been earlier already).
    this.#knownSchedule.set(task, dueAt);
  }

  /** A task has run: its row is set to when it is to run again, or removed when nobody asked. */
  #finishTask(task: LedgerTask, again: number): void {
    if (again === Infinity) {
      this.#sql.exec('DELETE FROM schedule WHERE task = ?', task);
      this.#knownSchedule.delete(task);
      return;
    }
    this.#sql.exec('UPDATE schedule SET due_at = ? WHERE task = ?', again, task);
    this.#knownSchedule.set(task, again);
  }

  /** Points the one alarm at the earliest due task; skipped when it is already set that early or earlier. */
  async #armAlarm(): Promise<void> {
    const next = this.#sql.exec<{ due: number | null }>('SELECT MIN(due_at) AS due FROM schedule').one().due;
    if (next === null) {
      this.#armedFor = null;
      await this.ctx.storage.deleteAlarm();
      return;
    }
    const at = Math.max(next, Date.now());
    if (this.#armedFor !== null && this.#armedFor <= at) return;
    this.#armedFor = at;
    await this.ctx.storage.setAlarm(at);
  }

  #getMeta(key: string): string | undefined {
    return this.#sql.exec<{ value: string }>('SELECT value FROM meta WHERE key = ?', key).toArray()[0]?.value;
  }

  #setMeta(key: string, value: string): void {
    this.#sql.exec('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', key, value);
  }

  /** Brings the schema up to date; true when a ledger that existed before was migrated. */
  #migrate(): boolean {
    this.#sql.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    const version = Number(this.#getMeta('schema_version') ?? '0');
    for (let v = version; v < LEDGER_MIGRATIONS.length; v++) {
      this.ctx.storage.transactionSync(() => {
        this.#sql.exec(LEDGER_MIGRATIONS[v]!);
        this.#setMeta('schema_version', String(v + 1));
      });
    }
    return version > 0 && version < LEDGER_MIGRATIONS.length;
  }
}
