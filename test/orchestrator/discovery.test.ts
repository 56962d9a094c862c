import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { ProblemSchema } from '../../workers/lib/problem';
import { OrchestratorDiscoverySchema } from '../../workers/lib/schemas/discovery';
import { createOrchestratorApp } from '../../workers/orchestrator/app';
import { expectEveryRouteDocumented } from '../support/openapi';
import { newPrincipal } from '../support/orchestrator-client';

const BASE = 'http://127.0.0.1:8787';
const call = (path: string, init?: RequestInit) => exports.default.fetch(new Request(`${BASE}${path}`, init));

describe('orchestrator discovery (PROTOCOL §1)', () => {
  it('publishes its endpoints and the providers it knows', async () => {
    const res = await call('/.well-known/agent-provisioning');
    expect(res.status).toBe(200);
    const doc = OrchestratorDiscoverySchema.parse(await res.json());
    expect(doc).toMatchObject({
      role: 'orchestrator',
      id: 'orchestrator',
      issuer: BASE,
      jwks_uri: `${BASE}/.well-known/jwks.json`,
      mandates_endpoint: `${BASE}/v1/mandates`,
      attestations_endpoint: `${BASE}/v1/attestations`,
      charges_endpoint: `${BASE}/v1/charges`,
      providers: ['http://127.0.0.1:8788', 'http://127.0.0.1:8789'],
    });
  });

  it('publishes its public signing keys', async () => {
    const jwks = (await (await call('/.well-known/jwks.json')).json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys[0]).toMatchObject({ kty: 'OKP', crv: 'Ed25519' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
  });

  it('documents every route in /openapi.json', async () => {
    await expectEveryRouteDocumented(createOrchestratorApp(), () => call('/openapi.json'), BASE);
  });

  it('answers unknown paths, wrong methods and unauthenticated audit reads with problem+json', async () => {
    for (const [res, status, code] of [
      [await call('/v1/unknown'), 404, 'not_found'],
      // An id not of the kind the path names, to someone entitled to look: nothing is there.
      [await call('/v1/mandates/foo', { headers: { cookie: (await newPrincipal()).cookie } }), 404, 'not_found'],
      [await call('/.well-known/agent-provisioning', { method: 'POST' }), 405, 'method_not_allowed'],
      [await call('/v1/audit/verify'), 401, 'unauthorized'],
    ] as const) {
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      expect(ProblemSchema.parse(await res.json())).toMatchObject({ status, code });
    }
  });
});
