import type { PrincipalLedger } from '../../durable-objects/principal-ledger';
import { ProviderConfigSchema, readConfig, type ProviderConfig } from '../lib/config';

export type ProviderBindings = {
  DB: D1Database;
  LEDGER: DurableObjectNamespace<PrincipalLedger>;
  PUBLIC_BASE_URL: string;
  PROVIDER_ID: string;
  PROVIDER_NAME: string;
  TRUSTED_ORCHESTRATORS: string | string[];
  CATALOG: string | object;
  SIGNING_KEYS?: string;
  DEV_SEED?: string;
};

export const providerConfig = (env: ProviderBindings): ProviderConfig => readConfig(ProviderConfigSchema, env);
