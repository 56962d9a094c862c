// The catalog a provider instance serves: configuration (CATALOG), validated
// once, serialized once, with a strong ETag over the exact bytes served.
import { sha256Hex } from '../lib/audit';
import type { Catalog } from '../lib/schemas/catalog';
import type { ProviderConfig } from '../lib/config';

export type PublishedCatalog = { catalog: Catalog; body: string; etag: string };

const published = new WeakMap<ProviderConfig, PublishedCatalog>();

export function publishedCatalog(config: ProviderConfig): PublishedCatalog {
  let entry = published.get(config);
  if (!entry) {
    if (config.CATALOG.provider !== config.PROVIDER_ID) {
      throw new Error(`CATALOG.provider is ${config.CATALOG.provider} but PROVIDER_ID is ${config.PROVIDER_ID}`);
    }
    const body = JSON.stringify(config.CATALOG);
    entry = { catalog: config.CATALOG, body, etag: `"${sha256Hex(body).slice(0, 32)}"` };
    published.set(config, entry);
  }
  return entry;
}

/** RFC 9110 §13.1.2: If-None-Match uses the weak comparison, and `*` matches any current representation. */
export function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  if (header.trim() === '*') return true;
  const opaque = etag.replace(/^W\//, '');
  return header.split(',').some((tag) => tag.trim().replace(/^W\//, '') === opaque);
}
