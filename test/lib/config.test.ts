// A provider instance is configuration: these check that the configuration is
// validated, so a broken catalog fails loudly instead of serving nonsense.
import { describe, expect, it } from 'vitest';
import { ProviderConfigSchema, readConfig } from '../../workers/lib/config';
import { publishedCatalog } from '../../workers/provider/catalog';

const base = {
  PROVIDER_ID: 'third',
  PROVIDER_NAME: 'Third',
  PUBLIC_BASE_URL: 'https://third.example/',
  TRUSTED_ORCHESTRATORS: '["https://orch.example"]',
  SIGNING_KEYS: '[]',
};
const service = {
  id: 'queue',
  name: 'Queue',
  description: 'A message queue',
  parameters_schema: { type: 'object' },
  scopes: ['queues:write'],
  provisioning: 'sync',
  plans: [{ id: 'basic', name: 'Basic', price: { amount: 100, currency: 'usd' }, billing: 'month' }],
};

describe('provider configuration', () => {
  it('makes a third provider instance out of configuration alone', () => {
    const config = readConfig(ProviderConfigSchema, { ...base, CATALOG: JSON.stringify({ provider: 'third', services: [service] }) });
    expect(config.PUBLIC_BASE_URL).toBe('https://third.example');
    const { catalog, etag } = publishedCatalog(config);
    expect(catalog.services[0]!.plans[0]!.allowed_updates).toEqual([]);
    expect(etag).toMatch(/^"[0-9a-f]{32}"$/);
  });

  it.each([
    ['a plan updating to a plan that does not exist', { ...service, plans: [{ ...service.plans[0], allowed_updates: ['gold'] }] }, /gold is not another plan/],
    ['a negative price', { ...service, plans: [{ ...service.plans[0], price: { amount: -1, currency: 'usd' } }] }, /CATALOG/],
    ['an upper-case currency', { ...service, plans: [{ ...service.plans[0], price: { amount: 1, currency: 'USD' } }] }, /ISO 4217/],
    ['an unknown provisioning mode', { ...service, provisioning: 'later' }, /provisioning/],
  ])('refuses a catalog with %s', (_, bad, message) => {
    expect(() => readConfig(ProviderConfigSchema, { ...base, CATALOG: JSON.stringify({ provider: 'third', services: [bad] }) })).toThrow(message);
  });

  it('completes a service named by id and plans from what its backend describes, and lets the configuration override it', () => {
    const plans = [{ id: 'com-1y', name: '.com', price: { amount: 999, currency: 'usd' }, billing: 'year' }];
    const config = readConfig(ProviderConfigSchema, { ...base, CATALOG: JSON.stringify({ provider: 'third', services: [{ id: 'domain', plans, name: 'Names' }] }) });
    const [domain] = publishedCatalog(config).catalog.services;
    expect(domain).toMatchObject({ id: 'domain', name: 'Names', scopes: ['domains:write'], provisioning: 'sync', parameters_schema: { required: ['name'] }, plans: [{ price: { amount: 999 } }] });
  });

  it('refuses, at load, a service that no backend describes and the configuration does not complete', () => {
    const config = readConfig(ProviderConfigSchema, { ...base, CATALOG: JSON.stringify({ provider: 'third', services: [{ id: 'mystery', plans: service.plans }] }) });
    expect(() => publishedCatalog(config)).toThrow(/CATALOG service mystery is incomplete/);
  });

  it('refuses a catalog that is not JSON, naming the variable', () => {
    expect(() => readConfig(ProviderConfigSchema, { ...base, CATALOG: '{oops' })).toThrow(/CATALOG/);
  });
});
