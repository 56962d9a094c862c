// How a provider authenticates to the orchestrator's charges API (PROTOCOL.md
// §3.1 step 3): a JWT it signs with its published key, typ oap-provider+jwt,
// valid ≤ 60 s, single use, bound to the method, the URL and the body's hash.
import type { Context } from 'hono';
import { decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import { checkJwsHeader, ED25519_ALGS, sha256Base64url } from '../lib/jws';
import { issuerKeys } from '../lib/jwks-cache';
import { ProblemError } from '../lib/problem';
import { orchestratorConfig, type OrchestratorBindings } from './env';

export const PROVIDER_TOKEN_MAX_LIFETIME_S = 60;

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
  const binding = provider.binding ? (c.env as unknown as Record<string, Fetcher | undefined>)[provider.binding] : undefined;
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, issuerKeys(provider.issuer, provider.url, binding), {
      typ: 'oap-provider+jwt',
      algorithms: ED25519_ALGS,
      issuer: provider.issuer,
      audience: config.PUBLIC_BASE_URL,
      requiredClaims: ['exp', 'iat', 'jti'],
      clockTolerance: 5,
    }));
  } catch {
    throw refused('the token does not verify or has expired');
  }
  if (payload.exp! - payload.iat! > PROVIDER_TOKEN_MAX_LIFETIME_S) throw refused('the token lives longer than 60 s');
  if (payload.htm !== c.req.method) throw refused('htm does not match');
  if (payload.htu !== `${config.PUBLIC_BASE_URL}${c.req.path}`) throw refused('htu does not match');
  if (payload.body_sha256 !== (await sha256Base64url(body))) throw refused('body_sha256 does not match the body');
  return { provider: { id: provider.id, issuer: provider.issuer, url: provider.url }, jti: payload.jti!, expiresMs: payload.exp! * 1000 };
}
