// How a provider authenticates to the orchestrator's charges API (PROTOCOL.md
// §3.1 step 3): a JWT it signs with its published key, typ oap-provider+jwt,
// valid ≤ 60 s, single use, bound to the method, the URL and the body's hash.
import type { Context } from 'hono';
import { ProblemError } from '../lib/problem';
import { claimedIssuer, RequestTokenRefused, verifyRequestToken } from '../lib/request-tokens';
import { ledgerOf, type OrchestratorBindings, orchestratorConfig, providerKeys } from './env';

export const PROVIDER_TOKEN_MAX_LIFETIME_S = 60;

export type ProviderCaller = { provider: { id: string; issuer: string; url: string }; jti: string; expiresMs: number };

const refused = (detail: string) => new ProblemError(401, 'unauthorized', `Provider authentication failed: ${detail}.`, {}, { 'WWW-Authenticate': 'Bearer' });

export async function authenticateProvider(c: Context<{ Bindings: OrchestratorBindings; Variables: any }>, body: string): Promise<ProviderCaller> {
  const config = orchestratorConfig(c.env);
  const [scheme, token] = (c.req.header('authorization') ?? '').split(' ');
  if (scheme?.toLowerCase() !== 'bearer' || !token) throw refused('send Authorization: Bearer <oap-provider+jwt>');
  try {
    const iss = claimedIssuer(token, 'oap-provider+jwt');
    const provider = config.PROVIDERS.find((p) => p.issuer === iss);
    if (!provider) throw new RequestTokenRefused('unknown provider');
    const payload = await verifyRequestToken(token, {
      typ: 'oap-provider+jwt',
      issuer: provider.issuer,
      keys: providerKeys(c.env, provider),
      audience: config.PUBLIC_BASE_URL,
      method: c.req.method,
      url: `${config.PUBLIC_BASE_URL}${c.req.path}`,
      body,
      requiredClaims: ['jti'],
      maxLifetimeS: PROVIDER_TOKEN_MAX_LIFETIME_S,
    });
    return { provider: { id: provider.id, issuer: provider.issuer, url: provider.url }, jti: payload.jti!, expiresMs: payload.exp! * 1000 };
  } catch (error) {
    // The provider learns which check failed, to fix its signer: nothing in these messages is secret.
    throw refused((error as Error).message);
  }
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
