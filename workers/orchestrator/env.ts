import type { PrincipalLedger } from '../../durable-objects/principal-ledger';
import { OrchestratorConfigSchema, readConfig, type OrchestratorConfig } from '../lib/config';

export type OrchestratorBindings = {
  DB: D1Database;
  LEDGER: DurableObjectNamespace<PrincipalLedger>;
  PUBLIC_BASE_URL: string;
  ORCHESTRATOR_ID: string;
  ORCHESTRATOR_NAME: string;
  PROVIDERS: string | string[];
  SIGNING_KEYS?: string;
  DEV_SEED?: string;
};

export const orchestratorConfig = (env: OrchestratorBindings): OrchestratorConfig => readConfig(OrchestratorConfigSchema, env);
