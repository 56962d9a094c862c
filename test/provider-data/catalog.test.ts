// The second provider instance: same code, another configuration.
import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { CatalogSchema } from '../../workers/lib/schemas/catalog';
import { ProviderDiscoverySchema } from '../../workers/lib/schemas/discovery';

const BASE = 'http://127.0.0.1:8789';
const get = (path: string) => exports.default.fetch(new Request(`${BASE}${path}`));

describe('provider "data"', () => {
  it('is the same Worker with its own id and base URL', async () => {
    const doc = ProviderDiscoverySchema.parse(await (await get('/.well-known/agent-provisioning')).json());
    expect(doc).toMatchObject({ id: 'data', issuer: BASE, catalog_endpoint: `${BASE}/v1/catalog` });
  });

  it('offers database with free and pro plans, provisioned asynchronously', async () => {
    const catalog = CatalogSchema.parse(await (await get('/v1/catalog')).json());
    expect(catalog.provider).toBe('data');
    const [database] = catalog.services;
    expect(catalog.services).toHaveLength(1);
    expect(database).toMatchObject({ id: 'database', provisioning: 'async', scopes: ['databases:write'] });
    expect(database!.plans.map((p) => [p.id, p.price.amount, p.billing, p.allowed_updates])).toEqual([
      ['free', 0, 'month', ['pro']],
      ['pro', 2500, 'month', ['free']],
    ]);
  });
});
