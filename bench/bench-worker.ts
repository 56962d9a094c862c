// The Worker the benchmarks run in: the provider Worker, plus what they
// compare it against: a bare counter object, and the same provisioning with
// governance switched off. Not deployed: only bench/vitest.config.ts uses it.
import { DurableObject, WorkerEntrypoint } from 'cloudflare:workers';
import { Hono } from 'hono';
import type { ProviderBindings } from '../workers/provider/env';
import { ledgerOf } from '../workers/provider/env';
import provider from '../workers/provider/index';
import { checkAgainstCatalog, type ResourceRequest } from '../workers/provider/provisioning';
import { backendFor } from '../workers/provider/services';
import { idempotent, requireAccessToken, type TokenVariables } from '../workers/provider/token-auth';
import { fakeChargesApi } from '../test/support/stand-ins';

export { PrincipalLedger } from '../durable-objects/principal-ledger';

const chargesApi = fakeChargesApi();

/**
 * The orchestrator's charges API played inside workerd, beside the provider:
 * the governed path pays a service binding call as it would on the platform,
 * not a hop out to Node and back that only a test harness has.
 */
export class FakeOrchestrator extends WorkerEntrypoint {
  override fetch(request: Request): Promise<Response> {
    return chargesApi(request);
  }
}

/** The least a Durable Object can do per request: add one to a number in SQLite storage. */
export class BareCounter extends DurableObject {
  constructor(ctx: DurableObjectState, env: unknown) {
    super(ctx, env as never);
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)');
    ctx.storage.sql.exec('CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY) WITHOUT ROWID');
  }

  /** One new row under a random key and nothing else: the least a call that records something new can write. */
  insertRow(): void {
    this.ctx.storage.transactionSync(() => this.ctx.storage.sql.exec('INSERT INTO seen (key) VALUES (?)', crypto.randomUUID()));
  }

  increment(): number {
    return this.ctx.storage.transactionSync(
      () => this.ctx.storage.sql.exec<{ n: number }>('INSERT INTO counter (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1 RETURNING n').one().n,
    );
  }
}

/**
 * POST /bench/ungoverned: the same paid call with governance off: the agent is
 * still authenticated, the request idempotent and validated, and the service
 * checks it as it would (a name taken or protected), but there is no
 * signature, no reserve, no orchestrator, no capture: the backend provisions
 * and the account's ledger records it.
 */
const bench = new Hono<{ Bindings: ProviderBindings; Variables: TokenVariables }>();
bench.post('/bench/ungoverned', requireAccessToken, idempotent, async (c) => {
  const token = c.get('token');
  const request = (await c.req.json()) as ResourceRequest;
  checkAgainstCatalog(c.env, request);
  const resourceId = `res_${crypto.randomUUID()}`;
  const backend = backendFor(request.service)!;
  const ctx = { resource_id: resourceId, account_id: token.account_id, service: request.service, plan: request.plan, parameters: request.parameters };
  // The service's own check (a name taken or protected) is the service's, not governance: both paths run it.
  await backend.check?.(c.env, ctx);
  const done = await backend.provision(c.env, ctx);
  const event = await ledgerOf(c.env, token.account_id).appendAuditEvent(token.account_id, {
    actor: { type: 'agent', id: token.agent_id },
    action: 'resource.provision',
    target: resourceId,
    outcome: 'succeeded',
  });
  return c.json({ resource_id: resourceId, ...done.fields, audit_event_id: event.id }, 201);
});
bench.all('*', (c) => provider.fetch(c.req.raw, c.env, c.executionCtx));

export default bench;
