// Request hygiene (PROTOCOL.md Conventions): every error is problem+json with a
// stable code, never a 500 for bad input, and every response has a request id.
import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { ProblemSchema } from '../../workers/lib/problem';

const BASE = 'http://127.0.0.1:8788';
const call = (path: string, init?: RequestInit) => exports.default.fetch(new Request(`${BASE}${path}`, init));

async function expectProblem(res: Response, status: number, code: string) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  expect(res.headers.get('x-request-id')).toBeTruthy();
  const problem = ProblemSchema.parse(await res.json());
  expect(problem).toMatchObject({ status, code });
  expect(problem.instance).toBe(res.headers.get('x-request-id'));
  return problem;
}

describe('request hygiene', () => {
  it('answers an unknown path with 404 not_found', async () => {
    await expectProblem(await call('/v1/nothing-here'), 404, 'not_found');
  });

  it('answers a wrong method with 405 method_not_allowed and an Allow header', async () => {
    const res = await call('/v1/catalog', { method: 'DELETE' });
    const problem = await expectProblem(res, 405, 'method_not_allowed');
    expect(res.headers.get('allow')).toBe('GET, HEAD');
    expect(problem.allow).toEqual(['GET', 'HEAD']);
  });

  it('answers a body over 1 MiB with 413 payload_too_large, by Content-Length or by streaming', async () => {
    const huge = 'x'.repeat(1024 * 1024 + 1);
    await expectProblem(await call('/v1/catalog', { method: 'POST', body: huge, headers: { 'content-type': 'application/json' } }), 413, 'payload_too_large');
    const stream = new ReadableStream({
      start(controller) {
        for (let i = 0; i < 17; i++) controller.enqueue(new Uint8Array(64 * 1024));
        controller.close();
      },
    });
    await expectProblem(await call('/v1/catalog', { method: 'POST', body: stream, headers: { 'content-type': 'application/json' } }), 413, 'payload_too_large');
  });

  it('refuses JSON text naming a lone surrogate, in a value or a member name, anywhere in the body: 400 before any route', async () => {
    const json = (body: string) => call('/v1/resources', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
    for (const body of ['{"name":"\\ud800"}', '{"a":[1,{"b":"x\\udc00y"}]}', '{"\\udbff":1}', '["\\ude00\\ud83d"]']) {
      await expectProblem(await json(body), 400, 'invalid_request');
    }
    // A pair is one character; an escaped backslash before "u" is no escape; text that does not parse is the route's to refuse.
    for (const body of ['{"name":"\\ud83d\\ude00"}', '{"path":"C:\\\\ud800"}', '{"name":"\\ud800"']) {
      expect((await json(body)).status).toBe(401); // on to the route, which wants a token first
    }
    expect((await call('/v1/resources', { method: 'POST', body: '{"name":"\\ud800"}', headers: { 'content-type': 'text/plain' } })).status).toBe(401);
  });

  it('keeps a well-formed caller request id and replaces a malformed one', async () => {
    expect((await call('/v1/catalog', { headers: { 'x-request-id': 'trace-123' } })).headers.get('x-request-id')).toBe('trace-123');
    const res = await call('/v1/catalog', { headers: { 'x-request-id': 'bad id with spaces' } });
    expect(res.headers.get('x-request-id')).toMatch(/^req_[0-9a-f]{32}$/);
  });

  it('validates query parameters after authentication: an unauthenticated caller gets 401, not 422', async () => {
    const res = await call('/v1/audit?after=-3');
    await expectProblem(res, 401, 'invalid_token');
    expect(res.headers.get('www-authenticate')).toMatch(/^DPoP/);
  });
});
