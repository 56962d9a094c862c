// One object per `database` resource (provider "data"): the agent's own SQLite
// database. The object's state (the credential's hash, the plan's quota, its
// status) lives in the synchronous KV of SQLite-backed objects, which workerd
// keeps in the reserved `_cf_KV` table that SQL cannot read or write
// (SQLITE_AUTH on any `_cf_` name), so the whole SQL namespace is the agent's.
import { DurableObject } from 'cloudflare:workers';
import { timingSafeEqualText } from '../workers/lib/passwords';

export type DatabaseQuota = { rows: number; bytes: number };
export type DatabaseStatus = 'active' | 'suspended' | 'deleted';

type DatabaseRecord = {
  resource_id: string;
  status: DatabaseStatus;
  /** SHA-256 (hex) of the one live credential; the credential itself is never stored. */
  credential_hash: string | null;
  quota: DatabaseQuota;
  created: string;
};

export type SqlCell = string | number | null | { base64: string };
export type SqlParam = string | number | boolean | null;

export type QueryResult = { ok: true; columns: string[]; rows: SqlCell[][]; rows_read: number; rows_written: number };
export type QueryRefusal =
  | { ok: false; reason: 'not_found' | 'invalid_token' | 'sql_error' | 'suspended' | 'result_too_large'; detail: string }
  | { ok: false; reason: 'quota_exceeded'; detail: string; quota: DatabaseQuota; usage: { rows: number; bytes: number } };
export type Access = 'ok' | 'not_found' | 'invalid_token';

const RECORD = 'database';
/**
 * An upper bound of the rows in the agent's tables, raised by each write's
 * changes; an exact count is taken only when the bound would pass the quota
 * (a count on every write would cost O(rows) per INSERT on a large plan).
 */
const ROWS_BOUND = 'rows_bound';

/** A result is read into memory before it is answered: past this many bytes the statement is refused and undone. */
export const MAX_RESULT_BYTES = 4 * 1024 * 1024;

/** Thrown inside the statement's transaction to undo it. */
class Refused extends Error {
  constructor(
    readonly reason: 'suspended' | 'result_too_large' | 'quota_exceeded',
    readonly detail: string,
  ) {
    super(detail);
  }
}

export class DatabaseStore extends DurableObject {
  /**
   * Idempotent by resource id. A repeat (the saga provisioning again after a
   * crash) replaces the credential hash: only the latest provision's response
   * reaches the agent, so only its credential may work. A database once
   * destroyed stays gone: a late provision must not bring it back.
   */
  create(input: { resource_id: string; quota: DatabaseQuota; credential_hash: string }): { ok: true; created: boolean } | { ok: false; reason: 'deleted' } {
    const kv = this.ctx.storage.kv;
    const existing = kv.get<DatabaseRecord>(RECORD);
    if (existing?.status === 'deleted') return { ok: false, reason: 'deleted' };
    this.ctx.storage.transactionSync(() => {
      kv.put<DatabaseRecord>(RECORD, {
        resource_id: input.resource_id,
        status: existing?.status ?? 'active',
        credential_hash: input.credential_hash,
        quota: input.quota,
        created: existing?.created ?? new Date().toISOString(),
      });
      if (!existing) kv.put(ROWS_BOUND, 0);
      else if (existing.quota.rows !== input.quota.rows) kv.put(ROWS_BOUND, this.#countRows());
    });
    return { ok: true, created: !existing };
  }

  /** Checked before the route reads the request body (PROTOCOL.md Conventions). */
  authorize(credentialHash: string): Access {
    return this.#access(credentialHash).access;
  }

  /**
   * Runs the agent's SQL in one transaction: a statement that fails, or that
   * a refusal stops, leaves nothing behind. Writes that would take the
   * database past its quota are refused; reads, and writes that shrink it
   * (DELETE, DROP), always pass, even over quota (after a downgrade).
   */
  query(credentialHash: string, sql: string, params: SqlParam[]): QueryResult | QueryRefusal {
    const { access, record } = this.#access(credentialHash);
    if (access !== 'ok') return { ok: false, reason: access, detail: access === 'not_found' ? 'No such database.' : 'The database credential is not valid.' };
    const storage = this.ctx.storage;
    try {
      return storage.transactionSync(() => {
        const before = this.#footprint();
        // workerd binds a boolean as the text 'true'; SQLite's own booleans are 1 and 0.
        const cursor = storage.sql.exec(sql, ...params.map((p) => (typeof p === 'boolean' ? Number(p) : p)));
        const rows: SqlCell[][] = [];
        let bytes = 0;
        for (const raw of cursor.raw()) {
          const row = raw.map(cellOf);
          for (const cell of row) bytes += typeof cell === 'string' ? cell.length : cell === null || typeof cell === 'number' ? 8 : cell.base64.length;
          if (bytes > MAX_RESULT_BYTES) throw new Refused('result_too_large', `The result is larger than ${MAX_RESULT_BYTES} bytes; select fewer rows or columns (LIMIT).`);
          rows.push(row);
        }
        const after = this.#footprint();
        const changes = after.changes - before.changes;
        const schemaChanged = after.schema !== before.schema;
        if ((changes > 0 || schemaChanged || after.bytes !== before.bytes) && record.status === 'suspended') {
          throw new Refused('suspended', 'The database is suspended (its renewal was not paid): it answers reads only.');
        }
        if (after.bytes > record.quota.bytes && after.bytes > before.bytes) {
          throw new Refused('quota_exceeded', `This write would take the database to ${after.bytes} bytes, past its plan’s ${record.quota.bytes}.`);
        }
        // Only INSERTs (counted by total_changes, with what their triggers do)
        // and DDL (CREATE TABLE … AS SELECT, a virtual table's shadow tables) add rows.
        if (changes > 0 || schemaChanged) this.#checkRows(schemaChanged ? Infinity : changes, record.quota);
        return { ok: true as const, columns: cursor.columnNames, rows, rows_read: cursor.rowsRead, rows_written: cursor.rowsWritten };
      });
    } catch (error) {
      // Besides our refusals only the agent's statement can throw: SQLite's words about it are for the agent.
      if (!(error instanceof Refused)) return { ok: false, reason: 'sql_error', detail: sqliteMessage(error) };
      if (error.reason !== 'quota_exceeded') return { ok: false, reason: error.reason, detail: error.detail };
      // Rolled back: what the database holds now is what it held before.
      return { ok: false, reason: error.reason, detail: error.detail, quota: record.quota, usage: { rows: this.#countRows(), bytes: storage.sql.databaseSize } };
    }
  }

  /** New credential hash; the old credential fails from the next request on. */
  rotate(credentialHash: string): { ok: boolean } {
    return this.#update((record) => ({ ...record, credential_hash: credentialHash }));
  }

  suspend(): { ok: boolean } {
    return this.#update((record) => ({ ...record, status: 'suspended' }));
  }

  resume(): { ok: boolean } {
    return this.#update((record) => ({ ...record, status: 'active' }));
  }

  /** A plan change: the new quota, and an exact row count so the bound is true under it. */
  setQuota(quota: DatabaseQuota): { ok: boolean } {
    return this.ctx.storage.transactionSync(() => {
      const done = this.#update((record) => ({ ...record, quota }));
      if (done.ok) this.ctx.storage.kv.put(ROWS_BOUND, this.#countRows());
      return done;
    });
  }

  /**
   * Deletes the agent's tables and the object's state, then keeps a tombstone
   * so that later calls answer not found and a late create cannot revive it.
   */
  async destroy(): Promise<void> {
    const record = this.ctx.storage.kv.get<DatabaseRecord>(RECORD);
    await this.ctx.storage.deleteAll();
    this.ctx.storage.kv.put<DatabaseRecord>(RECORD, {
      resource_id: record?.resource_id ?? '',
      status: 'deleted',
      credential_hash: null,
      quota: { rows: 0, bytes: 0 },
      created: record?.created ?? new Date().toISOString(),
    });
  }

  #access(credentialHash: string): { access: 'not_found'; record: null } | { access: 'ok' | 'invalid_token'; record: DatabaseRecord } {
    const record = this.ctx.storage.kv.get<DatabaseRecord>(RECORD);
    if (!record || record.status === 'deleted') return { access: 'not_found', record: null };
    // Hashes of equal length, compared in constant time.
    const ok = record.credential_hash !== null && timingSafeEqualText(credentialHash, record.credential_hash);
    return { access: ok ? 'ok' : 'invalid_token', record };
  }

  #update(change: (record: DatabaseRecord) => DatabaseRecord): { ok: boolean } {
    const record = this.ctx.storage.kv.get<DatabaseRecord>(RECORD);
    if (!record || record.status === 'deleted') return { ok: false };
    this.ctx.storage.kv.put(RECORD, change(record));
    return { ok: true };
  }

  /**
   * Inside the statement's transaction; `added` is an upper bound of the rows
   * it added. Below the quota the bound is enough; past it, count. Once the
   * bound passes the quota it is exact (every write there counts), so a write
   * is refused exactly when it leaves more rows than the quota and than
   * before: a DELETE over quota passes.
   */
  #checkRows(added: number, quota: DatabaseQuota) {
    const kv = this.ctx.storage.kv;
    const bound = kv.get<number>(ROWS_BOUND) ?? 0;
    if (bound + added <= quota.rows) {
      kv.put(ROWS_BOUND, bound + added);
      return;
    }
    const rows = this.#countRows();
    if (rows > quota.rows && rows > bound) throw new Refused('quota_exceeded', `This write would leave ${rows} rows, past the plan’s ${quota.rows}.`);
    kv.put(ROWS_BOUND, rows);
  }

  /**
   * What a statement can change, read before and after it. The statement's
   * own rowsWritten is not enough: with several statements in one call it
   * counts the last one only.
   */
  #footprint() {
    const sql = this.ctx.storage.sql;
    const { changes, schema } = sql
      .exec<{ changes: number; schema: string | null }>(`SELECT total_changes() AS changes, (SELECT group_concat(type || ' ' || name || ' ' || coalesce(sql, ''), char(10)) FROM sqlite_schema) AS schema`)
      .one();
    return { changes, schema, bytes: sql.databaseSize };
  }

  /** Rows in the agent's tables (virtual tables are counted through their shadow tables). */
  #countRows(): number {
    const sql = this.ctx.storage.sql;
    const tables = sql
      .exec<{ name: string }>(
        `SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_cf\\_%' ESCAPE '\\' AND sql NOT LIKE 'CREATE VIRTUAL %'`,
      )
      .toArray();
    let rows = 0;
    for (const { name } of tables) rows += sql.exec<{ n: number }>(`SELECT count(*) AS n FROM "${name.replaceAll('"', '""')}"`).one().n;
    return rows;
  }
}

function cellOf(value: SqlStorageValue): SqlCell {
  if (value instanceof ArrayBuffer) return { base64: base64Of(new Uint8Array(value)) };
  return value;
}

function base64Of(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

/** SQLite's message without workerd's "Error: " wrapper. */
function sqliteMessage(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/^Error: /, '');
}
