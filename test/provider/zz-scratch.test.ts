import { it } from 'vitest';
import { call } from '../support/fake-orchestrator';
it('scratch', async () => {
  for (const p of ['/oauth/revoke', '/oauth/introspect']) {
    const r = await call(p, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"token":"x"}' });
    console.log(p, r.status, r.headers.get('cache-control'), await r.text());
  }
});
