// Token issuance, ours against @cloudflare/workers-oauth-provider in the same
// runtime and the same run. Both take an ID-JAG through the JWT bearer grant:
// ours with a DPoP proof, the account lookup, the single-use checks in the
// account's ledger object and the audit event; theirs with its KV grant and
// token records. Assertions and proofs are signed before timing starts (that
// is the agent's and the orchestrator's work, not the provider's), and both
// Workers' fetch handlers are called directly in this isolate.
import { getOAuthApi, OAuthProvider } from '@cloudflare/workers-oauth-provider';
import { env } from 'cloudflare:workers';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { expect, it, vi } from 'vitest';
import { dpopProof, newAgentKey } from '../test/support/agent-keys';
import providerWorker from '../workers/provider/index';

const N = 200;
const ORCHESTRATOR = 'http://127.0.0.1:8787';
const PROVIDER = 'http://127.0.0.1:8788';
const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

async function issuerKey(alg: 'EdDSA' | 'ES256') {
  const { privateKey, publicKey } = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : 'ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKey, jwks: { keys: [{ ...jwk, kid, alg, use: 'sig' }] }, kid, alg };
}

async function timed(fn: () => Promise<void>) {
  const start = performance.now();
  await fn();
  return performance.now() - start;
}

it('token issuance: ours / workers-oauth-provider', async () => {
  const ours = await issuerKey('EdDSA');
  const theirs = await issuerKey('ES256');
  const realFetch = globalThis.fetch;
  vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
    const url = new Request(input as RequestInfo, init).url;
    if (url === `${ORCHESTRATOR}/.well-known/jwks.json`) return Response.json(ours.jwks);
    if (url === 'https://idp.example/jwks') return Response.json(theirs.jwks);
    return realFetch(input as RequestInfo, init);
  });

  // Both are called in-process, as the runtime calls a Worker's fetch.
  const ctx = { waitUntil: () => {}, passThroughOnException: () => {}, props: {} } as unknown as ExecutionContext;

  // Ours: one agent of one principal, N attestations and proofs.
  const agent = await newAgentKey();
  const sub = `sub_bench_${crypto.randomUUID()}`;
  const attestation = (i: number) =>
    new SignJWT({
      client_id: 'agt_bench',
      act: { sub: 'agt_bench' },
      cnf: { jkt: agent.jkt },
      authorization_details: [
        { type: 'oap_mandate', mandate_id: 'mdt_bench', services: ['domain'], max_per_charge: null, spend_limit: { amount: 5000, currency: 'usd', period: 'month' }, expires_at: '2099-01-01T00:00:00.000Z' },
      ],
    })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'oauth-id-jag+jwt', kid: ours.kid })
      .setIssuer(ORCHESTRATOR)
      .setAudience(PROVIDER)
      .setSubject(sub)
      .setJti(`bench-${i}-${crypto.randomUUID()}`)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(ours.privateKey);
  const ourRequests = await Promise.all(
    Array.from({ length: N + 1 }, async (_, i) => ({
      body: new URLSearchParams({ grant_type: JWT_BEARER, assertion: await attestation(i) }).toString(),
      dpop: await dpopProof(agent, 'POST', `${PROVIDER}/oauth/token`),
    })),
  );
  const issue = async (r: { body: string; dpop: string }) => {
    const res = await providerWorker.fetch(
      new Request(`${PROVIDER}/oauth/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', dpop: r.dpop }, body: r.body }),
      env,
      ctx,
    );
    if (res.status !== 200) throw new Error(`ours: ${res.status} ${await res.text()}`);
    await res.json();
  };

  // Theirs: the same grant, a public client, claims mapped to a user.
  const options = {
    apiRoute: '/api/',
    apiHandler: { fetch: async () => new Response('ok') },
    defaultHandler: { fetch: async () => new Response('not found', { status: 404 }) },
    authorizeEndpoint: '/authorize',
    tokenEndpoint: '/token',
    accessTokenTTL: 900,
    refreshTokenTTL: 0,
    resourceMetadata: { resource: `${PROVIDER}/api/` },
    enterpriseManagedAuthorization: {
      trustedIssuers: async ({ iss }: { iss: string }) => (iss === 'https://idp.example' ? { issuer: 'https://idp.example', jwksUri: 'https://idp.example/jwks', algorithms: ['ES256'] } : null),
      mapClaims: async ({ claims, requestedScope }: { claims: { sub: string }; requestedScope: string[] }) => ({ userId: `u-${claims.sub}`, scope: requestedScope, props: { sub: claims.sub } }),
      allowPublicClients: true,
    },
  };
  const provider = new OAuthProvider(options as never);
  const client = await getOAuthApi(options as never, env).createClient({ tokenEndpointAuthMethod: 'none', redirectUris: ['https://client.example/cb'] } as never);
  const idJag = (i: number) =>
    new SignJWT({ client_id: client.clientId, resource: `${PROVIDER}/api/`, scope: 'read' })
      .setProtectedHeader({ alg: 'ES256', typ: 'oauth-id-jag+jwt', kid: theirs.kid })
      .setIssuer('https://idp.example')
      .setAudience(PROVIDER)
      .setSubject('employee-1')
      .setJti(`bench-${i}-${crypto.randomUUID()}`)
      .setIssuedAt()
      .setExpirationTime('5m')
      .sign(theirs.privateKey);
  const theirRequests = await Promise.all(
    Array.from({ length: N + 1 }, async (_, i) => new URLSearchParams({ grant_type: JWT_BEARER, assertion: await idJag(i), client_id: client.clientId, scope: 'read' }).toString()),
  );
  const theirIssue = async (body: string) => {
    const res = await provider.fetch(new Request(`${PROVIDER}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body }), env as never, ctx);
    if (res.status !== 200) throw new Error(`theirs: ${res.status} ${await res.text()}`);
    await res.json();
  };

  // Warm both (first account creation, JWKS fetch, isolate JIT), then time them interleaved in halves.
  await issue(ourRequests[N]!);
  await theirIssue(theirRequests[N]!);
  let oursMs = 0;
  let theirsMs = 0;
  for (const half of [0, 1]) {
    const range = Array.from({ length: N / 2 }, (_, i) => half * (N / 2) + i);
    oursMs += await timed(async () => {
      for (const i of range) await issue(ourRequests[i]!);
    });
    theirsMs += await timed(async () => {
      for (const i of range) await theirIssue(theirRequests[i]!);
    });
  }
  console.log('\nratio  measurement');
  console.log(`${(oursMs / theirsMs).toFixed(2).padStart(5)}  token issuance per token, ours / @cloudflare/workers-oauth-provider (${N} each; goal ≤ 1.00)`);
  expect(oursMs).toBeGreaterThan(0);
});
