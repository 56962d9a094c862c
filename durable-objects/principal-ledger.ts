// One object per principal (at the orchestrator) or per account (at a
// provider): the single writer of everything that must not interleave for it.
// This file holds the audit chain and its outbox to D1, idempotency records
// and the one alarm that drives every deferred task. Money arrives with the
// payment issue and follows the same rule: one synchronous transaction, no await.
import { DurableObject } from 'cloudflare:workers';
import { chainAuditEvent, GENESIS_HASH, type AuditEntry, type AuditEvent } from '../workers/lib/audit';
import { insertAuditEvents } from '../workers/lib/audit-store';
import { newId } from '../workers/lib/ids';

export type LedgerEnv = { DB: D1Database };

const SCHEMA_VERSION = 1;
const OUTBOX_BATCH = 100;
const OUTBOX_RETRY_MAX_MS = 60_000;
const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000;
/** A request still "in progress" after this long is presumed dead and may be retried. */
const IDEMPOTENCY_LEASE_MS = 60_000;
const IDEMPOTENCY_SWEEP_MS = 60 * 60 * 1000;

export type AuditHead = { principal: string | null; seq: number; hash: string };
export type AuditSnapshot = { head: AuditHead; pending: AuditEvent[] };

export type StoredResponse = { status: number; headers: Record<string, string>; body: string };
export type IdempotencyStart =
  | { state: 'started' }
  | { state: 'replay'; response: StoredResponse }
  | { state: 'mismatch' }
  | { state: 'in_progress' };

type Task = 'audit_outbox' | 'idempotency_sweep';

export class PrincipalLedger extends DurableObject<LedgerEnv> {
  #sql: SqlStorage;

  constructor(ctx: DurableObjectState, env: LedgerEnv) {
    super(ctx, env);
    this.#sql = ctx.storage.sql;
    ctx.blockConcurrencyWhile(async () => this.#migrate());
  }

  /** Appends events to the chain, in order, in one transaction. */
  appendAuditEvents(principal: string, entries: AuditEntry[]): AuditEvent[] {
    const events = this.ctx.storage.transactionSync(() => this.#appendInTransaction(principal, entries));
    this.#schedule('audit_outbox', Date.now());
    return events;
  }

  appendAuditEvent(principal: string, entry: AuditEntry): AuditEvent {
    return this.appendAuditEvents(principal, [entry])[0]!;
  }

  auditHead(): AuditHead {
    const row = this.#sql.exec<{ principal: string | null; seq: number; hash: string }>('SELECT principal, seq, hash FROM audit_head').one();
    return { principal: row.principal, seq: row.seq, hash: row.hash };
  }

  /**
   * The chain head and every event not yet known to be in D1, read together:
   * a reader that merges these with D1 sees every event committed before it asked.
   */
  auditSnapshot(afterSeq = 0): AuditSnapshot {
    return this.ctx.storage.transactionSync(() => ({
      head: this.auditHead(),
      pending: this.#sql
        .exec<{ event: string }>('SELECT event FROM audit_outbox WHERE seq > ? ORDER BY seq', afterSeq)
        .toArray()
        .map((r) => JSON.parse(r.event) as AuditEvent),
    }));
  }

  /** Copies the outbox to D1 now (the alarm does the same); returns how many events remain. */
  async flushAuditOutbox(): Promise<number> {
    for (;;) {
      const batch = this.#sql
        .exec<{ seq: number; event: string }>('SELECT seq, event FROM audit_outbox ORDER BY seq LIMIT ?', OUTBOX_BATCH)
        .toArray();
      if (batch.length === 0) return 0;
      await insertAuditEvents(
        this.env.DB,
        batch.map((r) => JSON.parse(r.event) as AuditEvent),
      );
      this.#sql.exec('DELETE FROM audit_outbox WHERE seq <= ?', batch.at(-1)!.seq);
    }
  }

  beginIdempotentRequest(scope: string, key: string, fingerprint: string): IdempotencyStart {
    const now = Date.now();
    const result = this.ctx.storage.transactionSync((): IdempotencyStart => {
      const row = this.#sql
        .exec<{ fingerprint: string; state: string; status: number | null; headers: string | null; body: string | null; expires_at: number }>(
          'SELECT fingerprint, state, status, headers, body, expires_at FROM idempotency WHERE scope = ? AND key = ?',
          scope,
          key,
        )
        .toArray()[0];
      const live = row && row.expires_at > now;
      if (live && row.fingerprint !== fingerprint) return { state: 'mismatch' };
      if (live && row.state === 'completed') {
        return { state: 'replay', response: { status: row.status!, headers: JSON.parse(row.headers!), body: row.body! } };
      }
      if (live && row.state === 'in_progress') return { state: 'in_progress' };
      this.#sql.exec(
        `INSERT INTO idempotency (scope, key, fingerprint, state, created_at, expires_at) VALUES (?, ?, ?, 'in_progress', ?, ?)
         ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, state = 'in_progress', status = NULL,
           headers = NULL, body = NULL, created_at = excluded.created_at, expires_at = excluded.expires_at`,
        scope,
        key,
        fingerprint,
        now,
        now + IDEMPOTENCY_LEASE_MS,
      );
      return { state: 'started' };
    });
    this.#schedule('idempotency_sweep', now + IDEMPOTENCY_SWEEP_MS);
    return result;
  }

  /** Records the response a key will replay for 24 h. The caller has already removed credentials. */
  completeIdempotentRequest(scope: string, key: string, fingerprint: string, response: StoredResponse): void {
    this.#sql.exec(
      `UPDATE idempotency SET state = 'completed', status = ?, headers = ?, body = ?, expires_at = created_at + ?
       WHERE scope = ? AND key = ? AND fingerprint = ?`,
      response.status,
      JSON.stringify(response.headers),
      response.body,
      IDEMPOTENCY_TTL_MS,
      scope,
      key,
      fingerprint,
    );
  }

  /** A 5xx is not remembered: the key may be retried at once. */
  abandonIdempotentRequest(scope: string, key: string, fingerprint: string): void {
    this.#sql.exec(`DELETE FROM idempotency WHERE scope = ? AND key = ? AND fingerprint = ? AND state = 'in_progress'`, scope, key, fingerprint);
  }

  /** Runs every due task once; each task is idempotent because alarms run at least once. */
  override async alarm(): Promise<void> {
    const now = Date.now();
    const due = this.#sql.exec<{ task: Task }>('SELECT task FROM schedule WHERE due_at <= ?', now).toArray();
    for (const { task } of due) {
      this.#sql.exec('DELETE FROM schedule WHERE task = ? AND due_at <= ?', task, now);
      try {
        await this.#runTask(task);
        this.#setMeta(`retry:${task}`, '0');
      } catch (error) {
        const attempts = Number(this.#getMeta(`retry:${task}`) ?? '0') + 1;
        this.#setMeta(`retry:${task}`, String(attempts));
        const delay = Math.min(OUTBOX_RETRY_MAX_MS, 500 * 2 ** attempts);
        console.warn(JSON.stringify({ level: 'warn', message: `ledger task ${task} failed, retrying`, attempts, error: String(error) }));
        this.#scheduleRow(task, Date.now() + delay);
      }
    }
    await this.#armAlarm();
  }

  async #runTask(task: Task): Promise<void> {
    switch (task) {
      case 'audit_outbox':
        await this.flushAuditOutbox();
        return;
      case 'idempotency_sweep': {
        this.#sql.exec('DELETE FROM idempotency WHERE expires_at <= ?', Date.now());
        const left = this.#sql.exec<{ n: number }>('SELECT COUNT(*) AS n FROM idempotency').one().n;
        if (left > 0) this.#scheduleRow('idempotency_sweep', Date.now() + IDEMPOTENCY_SWEEP_MS);
        return;
      }
    }
  }

  #appendInTransaction(principal: string, entries: AuditEntry[]): AuditEvent[] {
    const head = this.auditHead();
    if (head.principal === null) this.#sql.exec('UPDATE audit_head SET principal = ?', principal);
    else if (head.principal !== principal) throw new Error(`ledger of ${head.principal} asked to record for ${principal}`);
    let { seq, hash } = head;
    const events: AuditEvent[] = [];
    for (const entry of entries) {
      const time = new Date().toISOString();
      const event = chainAuditEvent(entry, { seq: seq + 1, prev_hash: hash, principal, id: newId('evt'), time });
      this.#sql.exec('INSERT INTO audit_outbox (seq, event) VALUES (?, ?)', event.seq, JSON.stringify(event));
      seq = event.seq;
      hash = event.hash;
      events.push(event);
    }
    this.#sql.exec('UPDATE audit_head SET seq = ?, hash = ?', seq, hash);
    return events;
  }

  /** Keeps the earliest due time per task and points the one alarm at the earliest of all. */
  #schedule(task: Task, dueAt: number): void {
    this.#scheduleRow(task, dueAt);
    void this.#armAlarm();
  }

  #scheduleRow(task: Task, dueAt: number): void {
    this.#sql.exec(
      'INSERT INTO schedule (task, due_at) VALUES (?, ?) ON CONFLICT (task) DO UPDATE SET due_at = MIN(due_at, excluded.due_at)',
      task,
      dueAt,
    );
  }

  async #armAlarm(): Promise<void> {
    const next = this.#sql.exec<{ due: number | null }>('SELECT MIN(due_at) AS due FROM schedule').one().due;
    if (next === null) await this.ctx.storage.deleteAlarm();
    else await this.ctx.storage.setAlarm(next);
  }

  #getMeta(key: string): string | undefined {
    return this.#sql.exec<{ value: string }>('SELECT value FROM meta WHERE key = ?', key).toArray()[0]?.value;
  }

  #setMeta(key: string, value: string): void {
    this.#sql.exec('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', key, value);
  }

  #migrate(): void {
    this.#sql.exec('CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)');
    const version = Number(this.#getMeta('schema_version') ?? '0');
    if (version >= SCHEMA_VERSION) return;
    this.ctx.storage.transactionSync(() => {
      this.#sql.exec(`
        CREATE TABLE IF NOT EXISTS audit_head (
          only INTEGER PRIMARY KEY CHECK (only = 1), principal TEXT, seq INTEGER NOT NULL, hash TEXT NOT NULL);
        INSERT OR IGNORE INTO audit_head (only, principal, seq, hash) VALUES (1, NULL, 0, '${GENESIS_HASH}');
        CREATE TABLE IF NOT EXISTS audit_outbox (seq INTEGER PRIMARY KEY, event TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS schedule (task TEXT PRIMARY KEY, due_at INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS idempotency (
          scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
          status INTEGER, headers TEXT, body TEXT, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
          PRIMARY KEY (scope, key));
      `);
      this.#setMeta('schema_version', String(SCHEMA_VERSION));
    });
  }
}
