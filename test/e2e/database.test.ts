// A database at provider "data" is real storage, reached with the credential
// shown once (PROTOCOL.md §3.1): created asynchronously through the governed
// saga, queried over HTTP, rotated, deleted; the credential never appears in
// the audit trail or a later read.
import { readFileSync } from 'node:fs';
import { describe, expect, inject, it } from 'vitest';
import { sha256Hex } from '../../workers/lib/audit';
import { agentAtProvider, readJson, signedPaidCall, sleep, tokenRead, type Json, type ProviderAgent } from './support';

const urls = inject('urls');

const databaseAgent = () => agentAtProvider(urls, 'data', ['database']);
const tokenGet = (agent: ProviderAgent, path: string) => tokenRead(urls.data, agent, path);

async function query(url: string, credential: string, sql: string, params: unknown[] = []) {
  const res = await fetch(`${url}/query`, { method: 'POST', headers: { authorization: `Bearer ${credential}`, 'content-type': 'application/json' }, body: JSON.stringify({ sql, params }) });
  return { status: res.status, body: await readJson(res) };
}

describe('a database at provider data', () => {
  it('is created asynchronously, queried with its credential, rotated and deleted; the credential shows up nowhere else', async () => {
    const agent = await databaseAgent();
    const accepted = await signedPaidCall(urls.data, agent.key, agent.token, 'POST', '/v1/resources', { service: 'database', plan: 'free', parameters: { name: 'shop' } }, 'db-create');
    const operation = await readJson(accepted);
    expect(accepted.status, JSON.stringify(operation)).toBe(202);
    // Conventions: even the 202 names the event that began the paid call.
    expect(operation.audit_event_id).toMatch(/^evt_/);

    let read: Json = {};
    for (let i = 0; i < 40 && read.status !== 'succeeded'; i++) {
      read = await readJson(await tokenGet(agent, `/v1/operations/${operation.operation_id}`));
      if (read.status !== 'succeeded') await sleep(250);
    }
    expect(read.status, JSON.stringify(read)).toBe('succeeded');
    const resource = read.resource;
    const url = `${urls.data}/v1/databases/${resource.resource_id}`;
    expect(resource).toMatchObject({ service: 'database', plan: 'free', status: 'active', name: 'shop', region: 'auto', url, quota: { rows: 10_000, bytes: 5_000_000 } });
    expect(resource.credentials).toEqual({ token: expect.stringMatching(/^dbt_/), url });
    const first = String(resource.credentials.token);
    const again = await readJson(await tokenGet(agent, `/v1/operations/${operation.operation_id}`));
    expect(again.resource).toMatchObject({ credentials: null, credentials_redacted: true });

    expect((await query(url, first, 'CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, cents INTEGER)')).status).toBe(200);
    const inserted = await query(url, first, 'INSERT INTO orders (item, cents) VALUES (?, ?), (?, ?)', ['tea', 350, 'cake', 420]);
    expect(inserted).toMatchObject({ status: 200, body: { rows_written: expect.any(Number) } });
    expect(await query(url, first, 'SELECT item, cents FROM orders ORDER BY id')).toEqual({
      status: 200,
      body: { columns: ['item', 'cents'], rows: [['tea', 350], ['cake', 420]], rows_read: 2, rows_written: 0 },
    });
    expect(await query(url, `dbt_${'x'.repeat(32)}`, 'SELECT 1')).toMatchObject({ status: 401, body: { code: 'invalid_token' } });

    const rotatedRes = await signedPaidCall(urls.data, agent.key, agent.token, 'POST', `/v1/resources/${resource.resource_id}/rotate`, {}, 'db-rotate');
    const rotated = await readJson(rotatedRes);
    expect(rotatedRes.status, JSON.stringify(rotated)).toBe(200);
    const second = String(rotated.credentials.token);
    expect(second).toMatch(/^dbt_/);
    expect(second).not.toBe(first);
    expect(rotated.audit_event_id).toMatch(/^evt_/);
    expect(await query(url, first, 'SELECT count(*) FROM orders')).toMatchObject({ status: 401, body: { code: 'invalid_token' } });
    expect(await query(url, second, 'SELECT count(*) FROM orders')).toMatchObject({ status: 200, body: { rows: [[2]] } });

    const shown = await (await tokenGet(agent, `/v1/resources/${resource.resource_id}`)).text();
    expect(JSON.parse(shown)).toMatchObject({ resource_id: resource.resource_id, url });
    for (const credential of [first, second]) expect(shown).not.toContain(credential);

    const deletedRes = await signedPaidCall(urls.data, agent.key, agent.token, 'DELETE', `/v1/resources/${resource.resource_id}`, {}, 'db-delete');
    expect(deletedRes.status, await deletedRes.clone().text()).toBe(200);
    expect(await query(url, second, 'SELECT count(*) FROM orders')).toMatchObject({ status: 404, body: { code: 'not_found' } });

    // §3.1: never in an audit event, whatever the trail holds by now.
    const audit = await tokenGet(agent, '/v1/audit');
    expect(audit.status).toBe(200);
    const trail = await audit.text();
    expect(trail).toContain('resource.rotate');
    for (const named of [operation.audit_event_id, rotated.audit_event_id]) expect(trail).toContain(`"id":"${named}"`);
    for (const credential of [first, second]) {
      expect(trail).not.toContain(credential);
      expect(trail).not.toContain(sha256Hex(credential));
    }

    // Nor in a log line of any Worker (what wrangler printed while this ran).
    await sleep(500);
    const logs = readFileSync(inject('logFile'), 'utf8');
    expect(logs).toContain('/v1/databases/');
    for (const credential of [first, second]) expect(logs).not.toContain(credential);
  });
});
