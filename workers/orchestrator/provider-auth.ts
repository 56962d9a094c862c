// How a provider authenticates to the orchestrator's charges API (PROTOCOL.md
// §3.1 step 3): a JWT it signs with its published key, typ oap-provider+jwt,
// valid ≤ 60 s, single use, bound to the method, the URL and the body's hash.
import type { Context } from 'hono';
import { decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import { checkJwsHeader, ED25519_ALGS, sha256Base64url } from '../lib/jws';
import { ProblemError } from '../lib/problem';
import { ledgerOf, type OrchestratorBindings, orchestratorConfig, providerKeys } from './env';

export const PROVIDER_TOKEN_MAX_LIFETIME_S = 60;
/** How far the provider's clock may run ahead of ours. */
const CLOCK_SKEW_S = 5;

export type ProviderCaller = { provider: { id: string; issuer: string; url: string }; jti: string; expiresMs: number };

const refused = (detail: string) => new ProblemError(401, 'unauthorized', `Provider authentication failed: ${detail}.`, {}, { 'WWW-Authenticate': 'Bearer' });

export async function authenticateProvider(c: Context<{ Bindings: OrchestratorBindings; Variables: any }>, body: string): Promise<ProviderCaller> {
  const config = orchestratorConfig(c.env);
  const [scheme, token] = (c.req.header('authorization') ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) throw refused('send Authorization: Bearer <oap-provider+jwt>');
  let unverified: JWTPayload;
  try {
    const header = checkJwsHeader(token);
    if (header.typ !== 'oap-provider+jwt') throw new Error('typ must be oap-provider+jwt');
    unverified = decodeJwt(token);
  } catch (error) {
    throw refused((error as Error).message);
  }
  const provider = config.PROVIDERS.find((p) => p.issuer === unverified.iss);
  if (!provider) throw refused('unknown provider');
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, providerKeys(c.env, provider), {
      typ: 'oap-provider+jwt',
      algorithms: ED25519_ALGS,
      issuer: provider.issuer,
      audience: config.PUBLIC_BASE_URL,
      requiredClaims: ['exp', 'iat', 'jti'],
      clockTolerance: CLOCK_SKEW_S,
    }));
  } catch {
    throw refused('the token does not verify or has expired');
  }
  // "exp ≤ 60 s" from now, not only from an iat the provider picks: a token dated ahead would be good for longer.
  const now = Math.floor(Date.now() / 1000);
  if (payload.iat! > now + CLOCK_SKEW_S) throw refused('iat is in the future');
  if (payload.exp! - payload.iat! > PROVIDER_TOKEN_MAX_LIFETIME_S || payload.exp! > now + PROVIDER_TOKEN_MAX_LIFETIME_S + CLOCK_SKEW_S) throw refused('the token lives longer than 60 s');
  if (payload.htm !== c.req.method) throw refused('htm does not match');
  if (payload.htu !== `${config.PUBLIC_BASE_URL}${c.req.path}`) throw refused('htu does not match');
  if (payload.body_sha256 !== (await sha256Base64url(body))) throw refused('body_sha256 does not match the body');
  return { provider: { id: provider.id, issuer: provider.issuer, url: provider.url }, jti: payload.jti!, expiresMs: payload.exp! * 1000 };
}

/**
 * A read's token is used up in the provider's own store: a read decides nothing in a principal's ledger (where a
 * charge's token is used up with its decision), and the lookup by key names its principal in the query, which htu
 * leaves out, so a per-principal store would let one token read from every principal.
 */
export async function useUpReadToken(env: OrchestratorBindings, caller: ProviderCaller): Promise<void> {
  const fresh = await ledgerOf(env, `provider:${caller.provider.id}`).consumeNonce(`provider:${caller.provider.id}:${caller.jti}`, caller.expiresMs + 60_000);
  if (!fresh) throw new ProblemError(401, 'replayed', 'This provider request token was already used.');
}
