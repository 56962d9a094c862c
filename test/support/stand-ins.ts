// Stand-ins that tests run in Node, behind miniflare service bindings, for
// the parties a Worker under test talks to (vitest.config.ts, bench/vitest.config.ts).
import { createHash, generateKeyPairSync } from 'node:crypto';

/**
 * The orchestrator's charges API as providers call it, played in Node for the
 * provider's saga tests: each principal (by its pairwise sub) gets the
 * behaviour a test sets (POST /_test/behaviour {sub, authorize, capture, void, refund}:
 * 'ok' | 'decline' | 'error' | 'voided', or for authorize 'inactive' (402 mandate_inactive), 'busy' (503 with Retry-After), 'not_due' (409
 * renewal_not_due, due in 3 days), 'held' (answered only once
 * POST /_test/release {sub} comes) or 'lost' (authorized, but answered 504 as if the
 * answer was lost on its way), and every call is recorded (GET /_test/calls?sub=).
 * A provider finds its charge by key (GET /v1/charges?principal_sub=&idempotency_key=).
 */
export function fakeChargesApi() {
  type Behaviour = { authorize: string; capture: string; void: string; refund: string };
  const behaviours = new Map<string, Behaviour>();
  const chargeSubs = new Map<string, string>();
  const charges = new Map<string, { status: string; key: string }>();
  const calls: { sub: string; method: string; path: string; body: string; authorization: string }[] = [];
  const held = new Map<string, () => void>();
  let counter = 0;
  return async (request: Request) => {
    const url = new URL(request.url);
    const body = await request.text();
    if (url.pathname === '/_test/behaviour') {
      const { sub, ...rest } = JSON.parse(body) as Partial<Behaviour> & { sub: string };
      behaviours.set(sub, Object.assign({ authorize: 'ok', capture: 'ok', void: 'ok', refund: 'ok' }, rest));
      return new Response(null, { status: 204 });
    }
    if (url.pathname === '/_test/release') {
      held.get((JSON.parse(body) as { sub: string }).sub)?.();
      return new Response(null, { status: 204 });
    }
    if (url.pathname === '/_test/calls') return Response.json(calls.filter((c) => c.sub === url.searchParams.get('sub')));
    if (request.method === 'GET' && url.pathname === '/v1/charges') {
      const sub = url.searchParams.get('principal_sub') ?? '';
      const key = url.searchParams.get('idempotency_key');
      calls.push({ sub, method: 'GET', path: `${url.pathname}${url.search}`, body, authorization: request.headers.get('authorization') ?? '' });
      const data = [...charges.entries()].filter(([id, c]) => c.key === key && chargeSubs.get(id) === sub).map(([id, c]) => ({ charge_id: id, status: c.status }));
      return Response.json({ data, has_more: false });
    }
    const match = /^\/v1\/charges(?:\/([^/]+)\/(capture|void|refund))?$/.exec(url.pathname);
    if (!match) return Response.json({ code: 'not_found' }, { status: 404 });
    const [, chargeId, action] = match;
    const sub = chargeId ? (chargeSubs.get(chargeId) ?? '') : (JSON.parse(body) as { principal_sub: string }).principal_sub;
    calls.push({ sub, method: request.method, path: url.pathname, body, authorization: request.headers.get('authorization') ?? '' });
    const behaviour = behaviours.get(sub) ?? { authorize: 'ok', capture: 'ok', void: 'ok', refund: 'ok' };
    const problem = (status: number, code: string, headers: Record<string, string> = {}) =>
      Response.json({ type: 'about:blank', title: code, status, code, detail: code }, { status, headers: { 'content-type': 'application/problem+json', ...headers } });
    if (!chargeId) {
      if (behaviour.authorize === 'decline') return Response.json({ status: 402, code: 'spend_limit_exceeded', detail: 'over', limit: { amount: 100, currency: 'usd' }, spent: { amount: 100, currency: 'usd' }, requested: { amount: 1044, currency: 'usd' }, step_up_url: 'http://127.0.0.1:8787/dashboard/limits' }, { status: 402 });
      if (behaviour.authorize === 'inactive') return Response.json({ status: 402, code: 'mandate_inactive', detail: 'The mandate is revoked.', step_up_url: 'http://127.0.0.1:8787/dashboard' }, { status: 402 });
      if (behaviour.authorize === 'error') return problem(500, 'internal_error');
      if (behaviour.authorize === 'busy') return problem(503, 'internal_error', { 'retry-after': '30' });
      if (behaviour.authorize === 'not_due') return Response.json({ status: 409, code: 'renewal_not_due', detail: 'not yet', renews_at: new Date(Date.now() + 3 * 86_400_000).toISOString() }, { status: 409 });
      if (behaviour.authorize === 'held') await new Promise<void>((release) => held.set(sub, release));
      const { idempotency_key } = JSON.parse(body) as { idempotency_key: string };
      const existing = [...charges.entries()].find(([, c]) => c.key === idempotency_key);
      const id = existing?.[0] ?? `chg_fake${++counter}`;
      if (!existing) charges.set(id, { status: 'authorized', key: idempotency_key });
      chargeSubs.set(id, sub);
      if (behaviour.authorize === 'lost') return problem(504, 'gateway_timeout');
      return Response.json({ charge_id: id, status: 'authorized', decision: { mandate_status: 'active', constraint_results: [{ type: 'mandate_active', pass: true }] } }, { status: 201 });
    }
    const charge = charges.get(chargeId);
    if (!charge) return problem(404, 'not_found');
    if (action === 'refund') {
      // Part of a captured charge given back (a downgrade's credit); the amount is read from the recorded call.
      if (behaviour.refund === 'error') return problem(500, 'internal_error');
      if (charge.status !== 'captured') return Response.json({ status: 409, code: 'invalid_request', charge_status: charge.status }, { status: 409 });
      return Response.json({ charge_id: chargeId, status: 'captured', amount_refunded: (JSON.parse(body) as { amount: number }).amount });
    }
    const how = action === 'capture' ? behaviour.capture : behaviour.void;
    if (how === 'error') return problem(500, 'internal_error');
    if (action === 'capture' && (how === 'voided' || charge.status === 'voided')) return problem(409, 'charge_voided');
    charge.status = action === 'capture' ? 'captured' : 'voided';
    return Response.json({ charge_id: chargeId, status: charge.status });
  };
}

/** The key tests sign provider request tokens with (oap-provider+jwt), as provider "cloud" and "data" would. */
export function testProviderKey() {
  const { privateKey } = generateKeyPairSync('ed25519');
  const jwk = privateKey.export({ format: 'jwk' }) as { kty: string; crv: string; x: string; d: string };
  const kid = createHash('sha256').update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x })).digest('base64url');
  return { privateJwk: { ...jwk, kid }, publicJwk: { kty: jwk.kty, crv: jwk.crv, x: jwk.x, kid, use: 'sig' } };
}

/** How the real catalog bills the plans tests name; any other plan is one-time unless a test says otherwise. */
const STAND_IN_BILLING: Record<string, 'one_time' | 'month' | 'year'> = { 'com-1y': 'year', free: 'month', paid: 'month' };

/** A valid catalog publishing these prices: `{service: {plan: cents}}` (in usd), billed as `billing` says (by plan id). */
export function standInCatalog(prices: Record<string, Record<string, number>>, billing: Record<string, 'one_time' | 'month' | 'year'> = {}) {
  return {
    provider: 'stand-in',
    services: Object.entries(prices).map(([id, plans]) => ({
      id,
      name: id,
      description: '',
      parameters_schema: {},
      scopes: [`${id}:write`],
      provisioning: 'sync',
      limits: {},
      plans: Object.entries(plans).map(([plan, amount]) => ({ id: plan, name: plan, price: { amount, currency: 'usd' }, billing: billing[plan] ?? STAND_IN_BILLING[plan] ?? 'one_time', allowed_updates: [] })),
    })),
  };
}

/**
 * Stand-ins for the providers the orchestrator posts security events to, as
 * service bindings: they record what they receive and answer with the status
 * a test sets (POST /_test/status), and replay it on GET /_test/received.
 * They publish a catalog, with an ETag, that a test replaces (POST
 * /_test/catalog `{status, catalog}`); GET /_test/catalog-reads counts its reads
 * and the 304s among them.
 */
export function recordingProvider(publicJwk: object) {
  const received: { url: string; body: string }[] = [];
  let status = 202;
  let catalog: { status: number; catalog: unknown } = { status: 200, catalog: standInCatalog({ domain: { 'com-1y': 1044 } }) };
  const catalogReads = { reads: 0, not_modified: 0 };
  return async (request: Request) => {
    const url = new URL(request.url);
    if (url.pathname === '/.well-known/jwks.json') return Response.json({ keys: [publicJwk] });
    if (url.pathname === '/v1/catalog') {
      catalogReads.reads++;
      if (catalog.status !== 200) return new Response(null, { status: catalog.status });
      const etag = `"${createHash('sha256').update(JSON.stringify(catalog.catalog)).digest('base64url')}"`;
      if (request.headers.get('if-none-match') === etag) {
        catalogReads.not_modified++;
        return new Response(null, { status: 304, headers: { etag } });
      }
      return Response.json(catalog.catalog, { headers: { etag } });
    }
    if (url.pathname === '/_test/catalog') {
      catalog = (await request.json()) as typeof catalog;
      return new Response(null, { status: 204 });
    }
    if (url.pathname === '/_test/catalog-reads') return Response.json(catalogReads);
    if (url.pathname === '/_test/received') return Response.json(received);
    if (url.pathname === '/_test/status') {
      status = Number(await request.text());
      received.length = 0;
      return new Response(null, { status: 204 });
    }
    received.push({ url: request.url, body: await request.text() });
    return new Response(null, { status });
  };
}
