import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { CatalogSchema } from '../../workers/lib/schemas/catalog';
import {
  AuthorizationServerMetadataSchema,
  ProtectedResourceMetadataSchema,
  ProviderDiscoverySchema,
} from '../../workers/lib/schemas/discovery';

const BASE = 'http://127.0.0.1:8788';
const get = (path: string, init?: RequestInit) => exports.default.fetch(new Request(`${BASE}${path}`, init));

describe('provider discovery (PROTOCOL §1)', () => {
  it('publishes the agent-provisioning document with URLs built from the configured base, not the Host', async () => {
    const res = await exports.default.fetch(new Request('http://evil.example/.well-known/agent-provisioning'));
    expect(res.status).toBe(200);
    const doc = ProviderDiscoverySchema.parse(await res.json());
    expect(doc).toMatchObject({
      protocol: 'oap/2026-11',
      role: 'provider',
      id: 'cloud',
      catalog_endpoint: `${BASE}/v1/catalog`,
      token_endpoint: `${BASE}/oauth/token`,
      jwks_uri: `${BASE}/.well-known/jwks.json`,
      trusted_orchestrators: ['http://127.0.0.1:8787'],
    });
    expect(res.headers.get('x-request-id')).toMatch(/^req_/);
  });

  it('serves RFC 8414 metadata naming the JWT bearer grant, DPoP algorithms and oap_mandate details', async () => {
    const doc = AuthorizationServerMetadataSchema.parse(await (await get('/.well-known/oauth-authorization-server')).json());
    expect(doc.issuer).toBe(BASE);
    expect(doc.grant_types_supported).toEqual(['urn:ietf:params:oauth:grant-type:jwt-bearer']);
    expect(doc.dpop_signing_alg_values_supported).toEqual(expect.arrayContaining(['EdDSA', 'Ed25519']));
    expect(doc.authorization_details_types_supported).toEqual(['oap_mandate']);
    expect(doc.scopes_supported).toEqual(['billing:write', 'domains:write', 'workers:write']);
  });

  it('serves RFC 9728 metadata that requires DPoP-bound tokens', async () => {
    const doc = ProtectedResourceMetadataSchema.parse(await (await get('/.well-known/oauth-protected-resource')).json());
    expect(doc.authorization_servers).toEqual([BASE]);
    expect(doc.dpop_bound_access_tokens_required).toBe(true);
  });

  it('publishes public JWKs only, never the private part', async () => {
    const jwks = (await (await get('/.well-known/jwks.json')).json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys.length).toBeGreaterThan(0);
    for (const key of jwks.keys) {
      expect(key).toMatchObject({ kty: 'OKP', crv: 'Ed25519', use: 'sig' });
      expect(key).not.toHaveProperty('alg'); // both EdDSA and Ed25519 name these keys
      expect(key).not.toHaveProperty('d');
    }
  });
});

describe('provider catalog', () => {
  it('lists domain, worker-script and workers-paid with prices in minor units', async () => {
    const res = await get('/v1/catalog');
    expect(res.status).toBe(200);
    const catalog = CatalogSchema.parse(await res.json());
    expect(catalog.provider).toBe('cloud');
    expect(catalog.services.map((s) => s.id)).toEqual(['domain', 'worker-script', 'workers-paid']);
    const domain = catalog.services.find((s) => s.id === 'domain')!;
    expect(domain.plans.find((p) => p.id === 'com-1y')).toMatchObject({ price: { amount: 1044, currency: 'usd' }, billing: 'year' });
    expect(domain.limits.per_principal).toEqual({ count: 5, window: 'P1D' });
    const paid = catalog.services.find((s) => s.id === 'workers-paid')!;
    expect(paid.plans.find((p) => p.id === 'paid')).toMatchObject({ price: { amount: 500, currency: 'usd' }, billing: 'month' });
  });

  it('answers 304 with no body to its own strong ETag, and 200 to a stale one', async () => {
    const first = await get('/v1/catalog');
    const etag = first.headers.get('etag')!;
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
    const again = await get('/v1/catalog', { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');
    expect(again.headers.get('etag')).toBe(etag);
    expect((await get('/v1/catalog', { headers: { 'If-None-Match': `"stale", W/${etag}` } })).status).toBe(304);
    expect((await get('/v1/catalog', { headers: { 'If-None-Match': '"stale"' } })).status).toBe(200);
  });
});
