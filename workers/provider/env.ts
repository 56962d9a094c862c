import type { DatabaseStore } from '../../durable-objects/database-store';
import type { PrincipalLedger } from '../../durable-objects/principal-ledger';
import { ProviderConfigSchema, readConfig, type ProviderConfig } from '../lib/config';
import type { SessionConfig } from '../lib/sessions';

export type ProviderBindings = {
  DB: D1Database;
  LEDGER: DurableObjectNamespace<PrincipalLedger>;
  /** Only on instances that sell `database` (env.data): one object per database. */
  DATABASES?: DurableObjectNamespace<DatabaseStore>;
  PUBLIC_BASE_URL: string;
  /** Where the runner serves the Workers agents deploy (worker-script): `<base>/<name>/`. */
  WORKERS_BASE_URL?: string;
  PROVIDER_ID: string;
  PROVIDER_NAME: string;
  TRUSTED_ORCHESTRATORS: string | string[];
  ORCHESTRATOR_BINDINGS?: string | Record<string, string>;
  CATALOG: string | object;
  PROTECTED_NAMES?: string | string[];
  SIGNING_KEYS?: string;
  PASSWORD_PEPPER?: string;
  DEV_SEED?: string;
  EXISTING_PASSWORD?: string;
};

export const providerConfig = (env: ProviderBindings): ProviderConfig => readConfig(ProviderConfigSchema, env);

/** The account's ledger object: the single writer of its spend, single-use values and audit chain. */
export const ledgerOf = (env: ProviderBindings, accountId: string) => env.LEDGER.get(env.LEDGER.idFromName(accountId));

/** Refusals that cannot be tied to an account (a forged attestation) go to the provider's own chain. */
export const SYSTEM_CHAIN = 'system';

export const sessionConfigOf = (env: ProviderBindings): SessionConfig => {
  const config = providerConfig(env);
  return { roleId: config.PROVIDER_ID, baseUrl: config.PUBLIC_BASE_URL };
};

export function pepperOf(env: ProviderBindings): string {
  const pepper = providerConfig(env).PASSWORD_PEPPER;
  if (!pepper) throw new Error('PASSWORD_PEPPER is not set: run `wrangler secret put PASSWORD_PEPPER` (npm start generates one locally)');
  return pepper;
}
