// What a ledger module gets inside one synchronous transaction: the object's
// SQLite storage, the audit chain, and the schedule of the object's one alarm.
import type { AuditEntry, RecordedAuditEvent } from '../../workers/lib/audit';

export type LedgerTask = 'audit_outbox' | 'idempotency_sweep' | 'nonce_sweep' | 'provider_events' | 'hold_expiry' | 'webhooks' | 'saga_recovery' | 'charge_outbox' | 'async_provision' | 'renewals' | 'sign_head' | 'deprovisions' | 'unclaimed_credentials' | 'mandate_expiry' | 'backend_renewals';

export type LedgerTx = {
  sql: SqlStorage;
  /** Appends to this principal's chain, in the same transaction as the change it describes. */
  audit(entry: AuditEntry): RecordedAuditEvent;
  /** Asks the alarm to run `task` no later than `dueAt` (ms). */
  schedule(task: LedgerTask, dueAt: number): void;
  now: number;
};

/** A refusal decided inside the object: audited there, returned rather than thrown so the audit event commits. */
export type Refusal = { ok: false; code: string; detail: string };
export type Outcome<T> = ({ ok: true } & T) | Refusal;

export const refuse = (code: string, detail: string): Refusal => ({ ok: false, code, detail });

export const iso = (ms: number) => new Date(ms).toISOString();
