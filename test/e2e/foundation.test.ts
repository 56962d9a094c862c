// The three roles as `npm start` runs them, driven over real HTTP.
import { Validator } from '@seriousme/openapi-schema-validator';
import { describe, expect, inject, it } from 'vitest';

const urls = inject('urls');
// The runner serves agents' Workers, not the protocol: it has no discovery document (test/e2e/worker-script.test.ts).
const roles = Object.entries(urls).filter(([role]) => role !== 'runner') as [Exclude<keyof typeof urls, 'runner'>, string][];

describe('three roles over HTTP', () => {
  it.each(roles)('%s answers its discovery document at its own base URL', async (role, base) => {
    const res = await fetch(`${base}/.well-known/agent-provisioning`);
    expect(res.status).toBe(200);
    const doc = (await res.json()) as { role: string; id: string; jwks_uri: string };
    expect(doc.role).toBe(role === 'orchestrator' ? 'orchestrator' : 'provider');
    expect(doc.id).toBe(role);
    expect(doc.jwks_uri).toBe(`${base}/.well-known/jwks.json`);
  });

  it.each(roles)('%s publishes an OpenAPI 3.1 document that an independent validator accepts', async (_, base) => {
    const doc = await (await fetch(`${base}/openapi.json`)).json();
    const validator = new Validator();
    const result = await validator.validate(doc as Parameters<Validator['validate']>[0]);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
  });

  it('has generated distinct signing keys for each role', async () => {
    const kids = await Promise.all(roles.map(async ([, base]) => ((await (await fetch(`${base}/.well-known/jwks.json`)).json()) as { keys: { kid: string }[] }).keys[0]!.kid));
    expect(new Set(kids).size).toBe(3);
  });

  it('answers its own catalog ETag with 304 at each provider', async () => {
    for (const base of [urls.cloud, urls.data]) {
      const first = await fetch(`${base}/v1/catalog`);
      const etag = first.headers.get('etag')!;
      const again = await fetch(`${base}/v1/catalog`, { headers: { 'if-none-match': etag } });
      expect(again.status).toBe(304);
    }
  });

  it('answers garbage, a wrong media type, a wrong method, an unknown path and a huge body with problem+json', async () => {
    const json = { 'content-type': 'application/json' };
    const cases: [Response, number, string][] = [
      [await fetch(`${urls.orchestrator}/v1/principals`, { method: 'POST', body: '{"email": ', headers: json }), 400, 'invalid_request'],
      [await fetch(`${urls.orchestrator}/v1/principals`, { method: 'POST', body: '[1, 2]', headers: json }), 422, 'invalid_request'],
      [await fetch(`${urls.orchestrator}/v1/principals`, { method: 'POST', body: 'email=a', headers: { 'content-type': 'text/plain' } }), 415, 'unsupported_media_type'],
      [await fetch(`${urls.cloud}/v1/catalog`, { method: 'PUT', body: '{}', headers: { 'content-type': 'application/json' } }), 405, 'method_not_allowed'],
      [await fetch(`${urls.orchestrator}/v1/nope`), 404, 'not_found'],
      [await fetch(`${urls.data}/v1/catalog`, { method: 'POST', body: 'x'.repeat(2 * 1024 * 1024), headers: { 'content-type': 'application/json' } }), 413, 'payload_too_large'],
    ];
    for (const [res, status, code] of cases) {
      expect(res.status).toBe(status);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(res.headers.get('x-request-id')).toBeTruthy();
      expect(await res.json()).toMatchObject({ status, code });
    }
  });
});
