// Security Event Tokens (RFC 8417) the orchestrator owes providers (PROTOCOL.md
// §2.5): revocations and refunds, signed with the orchestrator's key and posted
// to the provider's events endpoint (RFC 8935 push delivery).
import { signJwt } from '../lib/jws';
import { OrchestratorConfigSchema, readConfig } from '../lib/config';
import { loadSigningKeys } from '../lib/signing-keys';
import { providerBinding } from './env';
import { pairwiseSubject } from './store/pairwise';
import type { QueuedProviderEvent } from '../../durable-objects/ledger/mandates';

export type ProviderEventEnv = {
  DB: D1Database;
  PUBLIC_BASE_URL: string;
  ORCHESTRATOR_ID: string;
  ORCHESTRATOR_NAME: string;
  PROVIDERS: string | unknown[];
  SIGNING_KEYS?: string;
};

export const EVENT_URI_PREFIX = 'https://oap.dev/events/';

export async function deliverProviderEvent(env: ProviderEventEnv, principal: string, event: QueuedProviderEvent): Promise<{ delivered: boolean; detail: string }> {
  const config = readConfig(OrchestratorConfigSchema, env);
  const provider = config.PROVIDERS.find((p) => p.id === event.provider_id);
  if (!provider) return { delivered: false, detail: `unknown provider ${event.provider_id}` };
  const set = await signJwt(await loadSigningKeys(config.SIGNING_KEYS), 'secevent+jwt', {
    iss: config.PUBLIC_BASE_URL,
    aud: provider.issuer,
    iat: Math.floor(Date.now() / 1000),
    jti: crypto.randomUUID(),
    sub: await pairwiseSubject(env.DB, principal, provider.id),
    events: { [`${EVENT_URI_PREFIX}${event.type}`]: event.payload },
  });
  const fetcher = providerBinding(env, provider);
  if (provider.binding && !fetcher) return { delivered: false, detail: `service binding ${provider.binding} is not bound` };
  const res = await (fetcher ?? globalThis).fetch(`${provider.url}/v1/events`, {
    method: 'POST',
    headers: { 'content-type': 'application/secevent+jwt', accept: 'application/json' },
    body: set,
    redirect: 'manual',
    signal: AbortSignal.timeout(10_000),
  });
  await res.body?.cancel();
  return { delivered: res.status >= 200 && res.status < 300, detail: `HTTP ${res.status}` };
}
