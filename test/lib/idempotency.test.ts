// The Idempotency-Key middleware over a real ledger object, mounted on a small
// app the way later endpoints mount it.
import { createRoute, z } from '@hono/zod-openapi';
import { env } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { acceptBody, createRoleApp } from '../../workers/lib/app';
import { idempotency, REPLAY_BODY } from '../../workers/lib/idempotency';
import { newId } from '../../workers/lib/ids';

const testEnv = env as unknown as TestEnv;

function appFor(caller: string) {
  const calls: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  let failNext = false;
  const app = createRoleApp<object>();
  const guard = idempotency({
    required: true,
    caller: () => ({ store: testEnv.LEDGER.get(testEnv.LEDGER.idFromName(caller)), caller }),
  });
  app.post('/v1/things', guard, acceptBody('json'), async (c) => {
    const body = await c.req.json<{ name: string }>();
    calls.push(body.name);
    await gate;
    if (failNext) {
      failNext = false;
      throw new Error('provider backend exploded');
    }
    const secret = `secret-${calls.length}`;
    c.set(REPLAY_BODY as never, { id: `thing_${calls.length}`, name: body.name, credentials: null, credentials_redacted: true } as never);
    return c.json({ id: `thing_${calls.length}`, name: body.name, credentials: secret }, 201);
  });
  return {
    calls,
    hold: () => {
      let release!: () => void;
      gate = new Promise((r) => (release = r));
      return release;
    },
    failNext: () => (failNext = true),
    post: (key: string | undefined, body: unknown) =>
      app.request('/v1/things', {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(key === undefined ? {} : { 'idempotency-key': key }) },
        body: JSON.stringify(body),
      }),
  };
}

describe('Idempotency-Key', () => {
  it('replays the first response for the same key and body, without running the handler again and without the credentials', async () => {
    const t = appFor(newId('prn'));
    const first = await t.post('key-1', { name: 'a' });
    expect(first.status).toBe(201);
    expect(await first.json()).toEqual({ id: 'thing_1', name: 'a', credentials: 'secret-1' });
    const again = await t.post('key-1', { name: 'a' });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.json()).toEqual({ id: 'thing_1', name: 'a', credentials: null, credentials_redacted: true });
    expect(t.calls).toEqual(['a']);
  });

  it('refuses the same key with a different body: 422 idempotency_key_reused, nothing run', async () => {
    const t = appFor(newId('prn'));
    await t.post('key-1', { name: 'a' });
    const res = await t.post('key-1', { name: 'b' });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ code: 'idempotency_key_reused' });
    expect(t.calls).toEqual(['a']);
  });

  it('answers 409 idempotency_request_in_progress to a concurrent retry while the first still runs', async () => {
    const t = appFor(newId('prn'));
    const release = t.hold();
    const first = t.post('key-1', { name: 'a' });
    await new Promise((r) => setTimeout(r, 50));
    const concurrent = await t.post('key-1', { name: 'a' });
    expect(concurrent.status).toBe(409);
    expect(await concurrent.json()).toMatchObject({ code: 'idempotency_request_in_progress' });
    release();
    expect((await first).status).toBe(201);
    expect(t.calls).toEqual(['a']);
  });

  it('forgets a 5xx so the same key can be retried at once', async () => {
    const t = appFor(newId('prn'));
    t.failNext();
    const failed = await t.post('key-1', { name: 'a' });
    expect(failed.status).toBe(500);
    expect(await failed.json()).toMatchObject({ code: 'internal_error' });
    const retried = await t.post('key-1', { name: 'a' });
    expect(retried.status).toBe(201);
    expect(retried.headers.get('idempotent-replayed')).toBeNull();
    expect(t.calls).toEqual(['a', 'a']);
  });

  it('scopes keys to the caller: two callers using one key do not see each other', async () => {
    const caller = newId('prn');
    const a = appFor(caller);
    const b = appFor(newId('prn'));
    await a.post('shared', { name: 'a' });
    const res = await b.post('shared', { name: 'b' });
    expect(res.status).toBe(201);
    expect(await res.json()).toMatchObject({ name: 'b' });
  });

  it('requires a key where the route says so, and refuses malformed keys', async () => {
    const t = appFor(newId('prn'));
    expect(await (await t.post(undefined, { name: 'a' })).json()).toMatchObject({ status: 400, code: 'idempotency_key_required' });
    expect(await (await t.post('x'.repeat(256), { name: 'a' })).json()).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(await (await t.post('', { name: 'a' })).json()).toMatchObject({ status: 400, code: 'invalid_request' });
    expect(t.calls).toEqual([]);
  });
});

describe('JSON bodies on a validated route', () => {
  const app = createRoleApp<object>();
  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/things',
      middleware: [acceptBody('json')] as const,
      request: { body: { required: true, content: { 'application/json': { schema: z.object({ name: z.string(), size: z.number().int() }) } } } },
      responses: { 200: { description: 'ok' } },
    }),
    (c) => c.json(c.req.valid('json'), 200) as never,
  );
  const post = (body: string, contentType = 'application/json') =>
    app.request('/v1/things', { method: 'POST', body, headers: { 'content-type': contentType } });

  it('answers a non-JSON media type with 415 unsupported_media_type', async () => {
    const res = await post('hello', 'text/plain');
    expect(res.status).toBe(415);
    expect(await res.json()).toMatchObject({ code: 'unsupported_media_type' });
  });

  it('answers garbage that claims to be JSON with 400 invalid_request, not 500', async () => {
    const res = await post('{"name": ');
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: 'invalid_request' });
  });

  it('answers a body of the wrong shape with 422 naming each failing path', async () => {
    const res = await post(JSON.stringify({ name: 7, size: 1.5 }));
    expect(res.status).toBe(422);
    const problem = (await res.json()) as { code: string; errors: { path: string }[] };
    expect(problem.code).toBe('invalid_request');
    expect(problem.errors.map((e) => e.path).sort()).toEqual(['/name', '/size']);
  });
});
