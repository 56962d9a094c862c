import type { PrincipalLedger } from '../../durable-objects/principal-ledger';
import { OrchestratorConfigSchema, readConfig, type OrchestratorConfig } from '../lib/config';
import { issuerKeys } from '../lib/jwks-cache';
import type { SessionConfig } from '../lib/sessions';

export type OrchestratorBindings = {
  DB: D1Database;
  LEDGER: DurableObjectNamespace<PrincipalLedger>;
  PUBLIC_BASE_URL: string;
  ORCHESTRATOR_ID: string;
  ORCHESTRATOR_NAME: string;
  PROVIDERS: string | unknown[];
  SIGNING_KEYS?: string;
  PASSWORD_PEPPER?: string;
  DEV_SEED?: string;
  DEMO_PASSWORD?: string;
};

export const orchestratorConfig = (env: OrchestratorBindings): OrchestratorConfig => readConfig(OrchestratorConfigSchema, env);

/** The principal's ledger object: the single writer of its agents, mandates, spend and audit chain. */
export const ledgerOf = (env: OrchestratorBindings, principalId: string) => env.LEDGER.get(env.LEDGER.idFromName(principalId));

/**
 * The service binding a provider is reached through, when its configuration names one (a provider on the same
 * account, or a stand-in in tests); otherwise undefined, and it is reached at its URL.
 */
export const providerBinding = (env: object, provider: { binding?: string | undefined }): Fetcher | undefined =>
  provider.binding ? (env as unknown as Record<string, Fetcher | undefined>)[provider.binding] : undefined;

/** A provider this orchestrator knows, by id. */
export const providerOf = (env: OrchestratorBindings, id: string) => orchestratorConfig(env).PROVIDERS.find((p) => p.id === id);

/** The provider's published keys (cached: workers/lib/jwks-cache.ts), through its binding when it has one. */
export const providerKeys = (env: OrchestratorBindings, provider: OrchestratorConfig['PROVIDERS'][number]) => issuerKeys(provider.issuer, provider.url, providerBinding(env, provider));

/** Refusals nobody can be held to (a proof from no known key) go to the orchestrator's own chain. */
export const SYSTEM_CHAIN = 'system';

export const sessionConfigOf = (env: OrchestratorBindings): SessionConfig => {
  const config = orchestratorConfig(env);
  return { roleId: config.ORCHESTRATOR_ID, baseUrl: config.PUBLIC_BASE_URL };
};

export function pepperOf(env: OrchestratorBindings): string {
  const pepper = orchestratorConfig(env).PASSWORD_PEPPER;
  if (!pepper) throw new Error('PASSWORD_PEPPER is not set: run `wrangler secret put PASSWORD_PEPPER` (npm start generates one locally)');
  return pepper;
}
