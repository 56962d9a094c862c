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
import { expect, it } from 'vitest';
import { dpopProof, newAgentKey } from '../test/support/agent-keys';
import { JWT_BEARER, PROVIDER, serveJwks, signAttestation, useFakeOrchestrator } from '../test/support/fake-orchestrator';
import providerWorker from '../workers/provider/index';
import { median, timed, timedInTurn } from './measure';

const N = 400;

/** The baseline's identity provider: an ES256 key, its JWKS served by the fake orchestrator's fetch mock. */
async function issuerKey() {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKey, jwks: { keys: [{ ...jwk, kid, alg: 'ES256', use: 'sig' }] }, kid };
}

useFakeOrchestrator();

it('token issuance: ours / workers-oauth-provider', async () => {
  const theirs = await issuerKey();
  serveJwks('https://idp.example/jwks', () => theirs.jwks);

  // Both are called in-process, as the runtime calls a Worker's fetch.
  const ctx = { waitUntil: () => {}, passThroughOnException: () => {}, props: {} } as unknown as ExecutionContext;

  // Ours: one agent of one principal, N attestations and proofs.
  const agent = await newAgentKey();
  const sub = `sub_bench_${crypto.randomUUID()}`;
  const attestation = async () => (await signAttestation({ agent, sub })).jwt;
  const ourRequests = await Promise.all(
    Array.from({ length: N + 1 }, async () => ({
      body: new URLSearchParams({ grant_type: JWT_BEARER, assertion: await attestation() }).toString(),
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
    return ((await res.json()) as { account_id: string }).account_id;
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

  // Warm both (first account creation, JWKS fetch, isolate JIT), then time them in interleaved rounds,
  // each starting with the other side in turn. The figure is the median round: a pause on a shared
  // machine weighs on one round, not on the figure. Between timings our account's deferred work (the
  // audit copy to D1, off the request's path by design) is let finish, so that it lands in neither.
  const account = await issue(ourRequests[N]!);
  await theirIssue(theirRequests[N]!);
  const ledger = (env as unknown as TestEnv).LEDGER.get((env as unknown as TestEnv).LEDGER.idFromName(account));
  const ROUNDS = 20;
  const PER_ROUND = N / ROUNDS;
  const ratios: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const range = Array.from({ length: PER_ROUND }, (_, i) => round * PER_ROUND + i);
    const timeOurs = async () => {
      const ms = await timed(async () => {
        for (const i of range) await issue(ourRequests[i]!);
      });
      await ledger.flushAuditOutbox();
      return ms;
    };
    const timeTheirs = () =>
      timed(async () => {
        for (const i of range) await theirIssue(theirRequests[i]!);
      });
    const [oursMs, theirsMs] = await timedInTurn(round, timeOurs, timeTheirs);
    ratios.push(oursMs / theirsMs);
  }
  const figure = median(ratios);
  console.log('\nratio  measurement');
  console.log(`${figure.toFixed(2).padStart(5)}  token issuance per token, ours / @cloudflare/workers-oauth-provider (${N} each, median of ${ROUNDS} rounds; goal ≤ 1.00)`);
  expect(ratios.every((r) => r > 0)).toBe(true);
});
