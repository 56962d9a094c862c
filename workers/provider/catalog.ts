// The catalog a provider instance serves: configuration (CATALOG: services,
// plans, prices) completed by what each service's backend describes of itself
// (its parameters, scopes, sync or async), validated once, serialized once,
// with a strong ETag over the exact bytes served.
import { sha256Hex } from '../lib/audit';
import { ServiceSchema, type Catalog, type CatalogConfig } from '../lib/schemas/catalog';
import type { ProviderConfig } from '../lib/config';
import { backendFor } from './services';

export type PublishedCatalog = { catalog: Catalog; body: string; etag: string };

const published = new WeakMap<ProviderConfig, PublishedCatalog>();

export function publishedCatalog(config: ProviderConfig): PublishedCatalog {
  let entry = published.get(config);
  if (!entry) {
    if (config.CATALOG.provider !== config.PROVIDER_ID) {
      throw new Error(`CATALOG.provider is ${config.CATALOG.provider} but PROVIDER_ID is ${config.PROVIDER_ID}`);
    }
    const catalog = completeCatalog(config.CATALOG);
    const body = JSON.stringify(catalog);
    entry = { catalog, body, etag: `"${sha256Hex(body).slice(0, 32)}"` };
    published.set(config, entry);
  }
  return entry;
}

/** Each configured service over its backend's description; a service that ends up incomplete fails loudly at load. */
export function completeCatalog(configured: CatalogConfig): Catalog {
  const services = configured.services.map((entry) => {
    const described = backendFor(entry.id)?.describe ?? {};
    const result = ServiceSchema.safeParse({ ...described, ...entry });
    if (!result.success) {
      const problems = result.error.issues.map((i) => `${i.path.join('.') || '(service)'}: ${i.message}`).join('; ');
      throw new Error(`CATALOG service ${entry.id} is incomplete (no backend describes it, or the configuration is wrong): ${problems}`);
    }
    return result.data;
  });
  return { provider: configured.provider, services };
}

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and `*` matches any current representation. */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  const opaque = etag.replace(/^W\//, '');
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === opaque);
}
