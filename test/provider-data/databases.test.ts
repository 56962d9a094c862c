// Databases are real storage (provider "data"): the backend makes one
// DatabaseStore object per resource, and the agent reaches it over HTTP with
// the credential it was shown once. Tests go through the backend and the
// Worker's real fetch; storage is inspected inside the object.
import { runInDurableObject } from 'cloudflare:test';
import { env, exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import type { DatabaseStore } from '../../durable-objects/database-store';
import { sha256Hex } from '../../workers/lib/audit';
import { newId } from '../../workers/lib/ids';
import type { ProviderBindings } from '../../workers/provider/env';
import { backendFor, type ResourceRef } from '../../workers/provider/services';

const BASE = 'http://127.0.0.1:8789';
const providerEnv = env as unknown as ProviderBindings;
const backend = backendFor('database')!;
type Json = Record<string, any>;

async function newDatabase(plan = 'free') {
  const resource_id = newId('res');
  const made = await backend.provision(providerEnv, { resource_id, account_id: 'acct_test', service: 'database', plan, parameters: { name: 'orders' } });
  const ref: ResourceRef = { resource_id, account_id: 'acct_test', service: 'database', plan, fields: made.fields };
  return { id: resource_id, token: String(made.credentials!.token), made, ref };
}

const storeOf = (id: string) => providerEnv.DATABASES!.get(providerEnv.DATABASES!.idFromName(id));

async function query(id: string, token: string | null, sql: string, params: unknown[] = []) {
  const res = await exports.default.fetch(
    new Request(`${BASE}/v1/databases/${id}/query`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token === null ? {} : { authorization: `Bearer ${token}` }) },
      body: JSON.stringify({ sql, params }),
    }),
  );
  return { status: res.status, headers: res.headers, body: (await res.json()) as Json };
}

/** Fills `table` (created here) with `n` rows in one statement. */
const fill = (id: string, token: string, n: number, table = 'items') =>
  query(id, token, `CREATE TABLE IF NOT EXISTS ${table} (n INTEGER); WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) INSERT INTO ${table} SELECT i FROM s`, [n]);

describe('database backend', () => {
  it('provisions an object that keeps only the credential’s hash, and shows the credential once', async () => {
    const { id, token, made } = await newDatabase();
    expect(made.fields).toEqual({ name: 'orders', region: 'auto', url: `${BASE}/v1/databases/${id}`, quota: { rows: 10_000, bytes: 5_000_000 } });
    expect(made.credentials).toEqual({ token: expect.stringMatching(/^dbt_[A-Za-z0-9_-]{32}$/), url: `${BASE}/v1/databases/${id}` });
    await runInDurableObject(storeOf(id), (_store: DatabaseStore, state) => {
      const stored = JSON.stringify([...state.storage.kv.list()]);
      expect(stored).toContain(sha256Hex(token));
      expect(stored).not.toContain(token);
    });
  });

  it('a repeated provision (the saga retrying after a crash) keeps the data and leaves only the latest credential alive', async () => {
    const { id, token, ref } = await newDatabase();
    expect((await query(id, token, 'CREATE TABLE kept (x)')).status).toBe(200);
    const again = await backend.provision(providerEnv, { ...ref, parameters: { name: 'orders' } });
    expect((await query(id, token, 'SELECT 1')).status).toBe(401);
    const second = await query(id, String(again.credentials!.token), "SELECT name FROM sqlite_schema WHERE name = 'kept'");
    expect(second.body.rows).toEqual([['kept']]);
  });

  it('rotation: the old credential is refused at once (401), the new one works, the data stays', async () => {
    const { id, token, ref } = await newDatabase();
    await query(id, token, 'CREATE TABLE t (x); INSERT INTO t VALUES (42)');
    const rotated = await backend.rotate!(providerEnv, ref);
    expect(rotated.fields).toEqual(ref.fields);
    const old = await query(id, token, 'SELECT x FROM t');
    expect(old).toMatchObject({ status: 401, body: { code: 'invalid_token' } });
    const fresh = await query(id, String(rotated.credentials!.token), 'SELECT x FROM t');
    expect(fresh).toMatchObject({ status: 200, body: { rows: [[42]] } });
  });

  it('deprovision deletes the storage; the database then answers 404, and a late provision cannot revive it', async () => {
    const { id, token, ref } = await newDatabase();
    await fill(id, token, 50);
    await backend.deprovision(providerEnv, ref);
    expect(await query(id, token, 'SELECT count(*) FROM items')).toMatchObject({ status: 404, body: { code: 'not_found' } });
    await runInDurableObject(storeOf(id), (_store: DatabaseStore, state) => {
      expect(state.storage.sql.exec<{ name: string }>('SELECT name FROM sqlite_schema').toArray().map((r) => r.name)).toEqual(['_cf_KV']);
      expect([...state.storage.kv.list()].map(([key, value]) => [key, (value as Json).status, (value as Json).credential_hash])).toEqual([['database', 'deleted', null]]);
    });
    await expect(backend.provision(providerEnv, { ...ref, parameters: { name: 'orders' } })).rejects.toThrow(/deleted/);
    await backend.deprovision(providerEnv, ref); // idempotent
  });

  it('suspension refuses writes (402) and keeps reads; a paid renewal lifts it', async () => {
    const { id, token, ref } = await newDatabase();
    await query(id, token, 'CREATE TABLE t (x); INSERT INTO t VALUES (1)');
    await backend.suspend!(providerEnv, ref);
    expect(await query(id, token, 'INSERT INTO t VALUES (2)')).toMatchObject({ status: 402, body: { code: 'spend_limit_exceeded' } });
    expect(await query(id, token, 'DROP TABLE t')).toMatchObject({ status: 402 });
    expect(await query(id, token, 'SELECT x FROM t')).toMatchObject({ status: 200, body: { rows: [[1]] } });
    await backend.renew!(providerEnv, ref, new Date());
    expect((await query(id, token, 'INSERT INTO t VALUES (2)')).status).toBe(200);
  });
});

describe('POST /v1/databases/{id}/query', () => {
  it('runs SQL with the credential: rows as arrays in the order of columns, counts, BLOBs as base64', async () => {
    const { id, token } = await newDatabase();
    const created = await query(id, token, 'CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL, paid INTEGER, note BLOB)');
    expect(created).toMatchObject({ status: 200, body: { columns: [], rows: [] } });
    expect(created.headers.get('cache-control')).toBe('no-store');
    const inserted = await query(id, token, "INSERT INTO orders (item, paid, note) VALUES (?, ?, x'00ff10'), (?, ?, NULL) RETURNING id", ['tea', true, 'cake', null]);
    expect(inserted).toMatchObject({ status: 200, body: { columns: ['id'], rows: [[1], [2]] } });
    expect(inserted.body.rows_written).toBeGreaterThanOrEqual(2);
    const read = await query(id, token, 'SELECT id, item, paid, note FROM orders ORDER BY id');
    expect(read.body).toEqual({ columns: ['id', 'item', 'paid', 'note'], rows: [[1, 'tea', 1, { base64: 'AP8Q' }], [2, 'cake', null, null]], rows_read: 2, rows_written: 0 });
  });

  it('a missing, malformed or wrong credential is 401 invalid_token with a Bearer challenge, checked before the body', async () => {
    const { id } = await newDatabase();
    const missing = await query(id, null, 'SELECT 1');
    expect(missing).toMatchObject({ status: 401, body: { code: 'invalid_token' } });
    expect(missing.headers.get('www-authenticate')).toBe('Bearer realm="database"');
    const wrong = await query(id, `dbt_${'A'.repeat(32)}`, 'SELECT 1');
    expect(wrong).toMatchObject({ status: 401, body: { code: 'invalid_token' } });
    expect(wrong.headers.get('www-authenticate')).toBe('Bearer realm="database", error="invalid_token"');
    expect((await query(id, 'not-a-database-token', 'SELECT 1')).status).toBe(401);
    const invalidBody = await exports.default.fetch(
      new Request(`${BASE}/v1/databases/${id}/query`, { method: 'POST', headers: { authorization: `Bearer dbt_${'A'.repeat(32)}`, 'content-type': 'application/json' }, body: '{"sql": 5}' }),
    );
    expect(invalidBody.status).toBe(401);
  });

  it('another database’s credential does not open this one', async () => {
    const mine = await newDatabase();
    const theirs = await newDatabase();
    expect(await query(mine.id, theirs.token, 'SELECT 1')).toMatchObject({ status: 401, body: { code: 'invalid_token' } });
  });

  it('an unknown database is 404 not_found', async () => {
    const { token } = await newDatabase();
    expect(await query(newId('res'), token, 'SELECT 1')).toMatchObject({ status: 404, body: { code: 'not_found' } });
    expect(await query('not-a-resource', token, 'SELECT 1')).toMatchObject({ status: 404, body: { code: 'not_found' } });
  });

  it('a SQL error is 422 invalid_request with SQLite’s message, and a failing call leaves nothing behind', async () => {
    const { id, token } = await newDatabase();
    const error = await query(id, token, 'SELEC 1');
    expect(error).toMatchObject({ status: 422, body: { code: 'invalid_request', detail: expect.stringContaining('syntax error') } });
    // The first statement succeeded, the second failed: the whole call is undone.
    expect((await query(id, token, 'CREATE TABLE half (x); INSERT INTO nowhere VALUES (1)')).status).toBe(422);
    expect((await query(id, token, "SELECT name FROM sqlite_schema WHERE name = 'half'")).body.rows).toEqual([]);
    expect((await query(id, token, 'BEGIN')).status).toBe(422);
  });

  it('the agent’s SQL cannot reach the object’s own state (the credential hash lives in _cf_KV)', async () => {
    const { id, token } = await newDatabase();
    const read = await query(id, token, 'SELECT * FROM _cf_KV');
    expect(read).toMatchObject({ status: 422, body: { code: 'invalid_request', detail: expect.stringContaining('SQLITE_AUTH') } });
    expect(JSON.stringify(read.body)).not.toContain(sha256Hex(token));
    expect((await query(id, token, "UPDATE _cf_KV SET value = NULL WHERE key = 'database'")).status).toBe(422);
    expect((await query(id, token, 'DROP TABLE _cf_KV')).status).toBe(422);
    expect((await query(id, token, 'SELECT 1')).status).toBe(200);
  });

  it('refuses a result too large to answer (422), telling the agent to select less', async () => {
    const { id, token } = await newDatabase();
    const big = await query(id, token, 'WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20) SELECT hex(randomblob(150000)) FROM s');
    expect(big).toMatchObject({ status: 422, body: { code: 'invalid_request', detail: expect.stringContaining('LIMIT') } });
  });

  it('is in the provider’s OpenAPI document', async () => {
    const doc = (await (await exports.default.fetch(new Request(`${BASE}/openapi.json`))).json()) as Json;
    expect(doc.paths['/v1/databases/{id}/query'].post.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/QueryRequest' });
  });
});

describe('free-plan quota', () => {
  it('holds 10,000 rows; the 10,001st is 403 quota_exceeded and undone; reads and deletes still work', async () => {
    const { id, token } = await newDatabase();
    expect((await fill(id, token, 10_000)).status).toBe(200);
    const over = await query(id, token, 'INSERT INTO items VALUES (0)');
    expect(over).toMatchObject({ status: 403, body: { code: 'quota_exceeded', quota: { rows: 10_000, bytes: 5_000_000 }, usage: { rows: 10_000 } } });
    expect((await query(id, token, 'SELECT count(*) FROM items')).body.rows).toEqual([[10_000]]);
    expect((await query(id, token, 'DELETE FROM items WHERE n <= 10')).status).toBe(200);
    expect((await query(id, token, 'INSERT INTO items VALUES (0)')).status).toBe(200);
  });

  it('counts every statement of a multi-statement call, triggers and CREATE TABLE … AS SELECT (attempts to slip rows past the count)', async () => {
    const { id, token } = await newDatabase();
    await fill(id, token, 9_990);
    // rowsWritten of a call counts only its last statement: a trailing SELECT must not hide the INSERT.
    expect((await query(id, token, `${'INSERT INTO items VALUES (1);'.repeat(11)} SELECT 1`)).status).toBe(403);
    expect((await query(id, token, 'CREATE TABLE copy AS SELECT * FROM items')).status).toBe(403);
    await query(id, token, 'CREATE TABLE shadow (n); CREATE TRIGGER twice AFTER INSERT ON items BEGIN INSERT INTO shadow VALUES (NEW.n); END');
    expect((await query(id, token, 'INSERT INTO items VALUES (1), (2), (3), (4), (5)')).status).toBe(200);
    expect((await query(id, token, 'INSERT INTO items VALUES (1)')).status).toBe(403);
    expect((await query(id, token, 'SELECT (SELECT count(*) FROM items) + (SELECT count(*) FROM shadow)')).body.rows).toEqual([[10_000]]);
  });

  it('lets exactly as many of 100 concurrent inserts through as there is room for', async () => {
    const { id, token } = await newDatabase();
    await fill(id, token, 9_950);
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => query(id, token, 'INSERT INTO items VALUES (?)', [i])));
    expect(results.filter((r) => r.status === 200)).toHaveLength(50);
    expect(results.filter((r) => r.status === 403)).toHaveLength(50);
    expect((await query(id, token, 'SELECT count(*) FROM items')).body.rows).toEqual([[10_000]]);
  });

  it('holds 5 MB: a write past it is refused, a delete after it passes', async () => {
    const { id, token } = await newDatabase();
    await query(id, token, 'CREATE TABLE blobs (b BLOB)');
    let refused: Awaited<ReturnType<typeof query>> | undefined;
    for (let i = 0; i < 8 && !refused; i++) {
      const res = await query(id, token, 'INSERT INTO blobs VALUES (randomblob(1000000))');
      if (res.status !== 200) refused = res;
    }
    expect(refused).toMatchObject({ status: 403, body: { code: 'quota_exceeded', detail: expect.stringContaining('bytes') } });
    expect(refused!.body.usage.bytes).toBeLessThanOrEqual(5_000_000);
    expect((await query(id, token, 'DELETE FROM blobs WHERE rowid = 1')).status).toBe(200);
    // The freed pages are reused, so the database does not grow.
    expect((await query(id, token, 'INSERT INTO blobs VALUES (randomblob(900000))')).status).toBe(200);
  });

  it('after a downgrade past the quota: reads and deletes pass, inserts are refused until it fits', async () => {
    const { id, token, ref } = await newDatabase('pro');
    await fill(id, token, 10_050);
    const fields = await backend.changePlan!(providerEnv, ref, 'free');
    expect(fields.quota).toEqual({ rows: 10_000, bytes: 5_000_000 });
    expect((await query(id, token, 'SELECT count(*) FROM items')).status).toBe(200);
    expect((await query(id, token, 'INSERT INTO items VALUES (0)')).status).toBe(403);
    expect((await query(id, token, 'DELETE FROM items WHERE n <= 10')).status).toBe(200);
    expect((await query(id, token, "UPDATE items SET n = n + 1 WHERE n = 20")).status).toBe(200);
    expect((await query(id, token, 'INSERT INTO items VALUES (0)')).status).toBe(403);
    expect((await query(id, token, 'DELETE FROM items WHERE n <= 51')).status).toBe(200);
    expect((await query(id, token, 'INSERT INTO items VALUES (0)')).status).toBe(200);
  });
});
