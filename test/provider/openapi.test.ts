import { exports } from 'cloudflare:workers';
import { describe, expect, it } from 'vitest';
import { createProviderApp } from '../../workers/provider/app';
import { expectEveryRouteDocumented } from '../support/openapi';

describe('provider /openapi.json', () => {
  it('is OpenAPI 3.1 and documents every route the Worker serves', async () => {
    const doc = await expectEveryRouteDocumented(
      createProviderApp(),
      () => exports.default.fetch(new Request('http://127.0.0.1:8788/openapi.json')),
      'http://127.0.0.1:8788',
    );
    expect(Object.keys(doc.paths)).toContain('/v1/catalog');
  });
});
