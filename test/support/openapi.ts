import type { OpenAPIHono } from '@hono/zod-openapi';
import { expect } from 'vitest';

type OpenApiDocument = { openapi: string; servers: { url: string }[]; paths: Record<string, Record<string, unknown>> };

/**
 * The API lives under these prefixes and must be documented; HTML pages for
 * humans (/sign-in, approval and linking pages) are not part of it.
 */
const API_PREFIXES = ['/v1/', '/.well-known/', '/oauth/', '/session'];

/** Fails for each API route the app serves that its /openapi.json does not document. */
export async function expectEveryRouteDocumented(app: OpenAPIHono<any>, fetchDocument: () => Promise<Response>, baseUrl: string) {
  const res = await fetchDocument();
  expect(res.status).toBe(200);
  const doc = (await res.json()) as OpenApiDocument;
  expect(doc.openapi).toBe('3.1.0');
  expect(doc.servers).toEqual([{ url: baseUrl }]);
  const served = app.routes
    .filter((r) => r.method !== 'ALL' && API_PREFIXES.some((p) => r.path.startsWith(p)))
    .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, '{$1}')}`);
  const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
  expect(served.length).toBeGreaterThan(0);
  for (const route of served) expect(documented, `${route} is served but not documented`).toContain(route);
  return doc;
}
