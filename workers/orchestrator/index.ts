// Entry point of the orchestrator Worker (workers/orchestrator/wrangler.toml).
import { createOrchestratorApp } from './app';

export { PrincipalLedger } from '../../durable-objects/principal-ledger';

export default createOrchestratorApp();
