// The provider's calls to an orchestrator's charges API (PROTOCOL.md §3.1
// step 3), each authenticated by a fresh oap-provider+jwt bound to the
// method, the URL and the body.
import { sha256Base64url, signJwt } from '../lib/jws';
import { loadSigningKeys } from '../lib/signing-keys';
import { providerConfig, type ProviderBindings } from './env';

/** `retryAfter`: the orchestrator's Retry-After, when it could not decide now. */
export type ChargeCallResult = { status: number; body: Record<string, unknown> | null; retryAfter: string | null };

export class OrchestratorUnreachable extends Error {}

export async function callOrchestrator(env: ProviderBindings, orchestrator: string, method: 'GET' | 'POST', path: string, payload?: unknown): Promise<ChargeCallResult> {
  const config = providerConfig(env);
  const body = payload === undefined ? '' : JSON.stringify(payload);
  const now = Math.floor(Date.now() / 1000);
  const token = await signJwt(await loadSigningKeys(config.SIGNING_KEYS), 'oap-provider+jwt', {
    iss: config.PUBLIC_BASE_URL,
    aud: orchestrator,
    iat: now,
    exp: now + 60,
    jti: crypto.randomUUID(),
    htm: method,
    // Like DPoP's htu (RFC 9449 §4.2), without the query: the orchestrator compares it with its own URL and path.
    htu: `${orchestrator}${path.split('?')[0]}`,
    body_sha256: await sha256Base64url(body),
  });
  const bindingName = config.ORCHESTRATOR_BINDINGS[orchestrator];
  const binding = bindingName ? (env as unknown as Record<string, Fetcher | undefined>)[bindingName] : undefined;
  let res: Response;
  try {
    res = await (binding ?? globalThis).fetch(`${orchestrator}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(payload === undefined ? {} : { 'content-type': 'application/json' }), accept: 'application/json' },
      ...(payload === undefined ? {} : { body }),
      redirect: 'manual',
      signal: AbortSignal.timeout(10_000),
    });
  } catch (error) {
    throw new OrchestratorUnreachable(`the orchestrator could not be reached: ${String(error)}`);
  }
  const text = await res.text();
  let parsed: Record<string, unknown> | null = null;
  try {
    parsed = text ? (JSON.parse(text) as Record<string, unknown>) : null;
  } catch {
    parsed = null;
  }
  return { status: res.status, body: parsed, retryAfter: res.headers.get('retry-after') };
}
