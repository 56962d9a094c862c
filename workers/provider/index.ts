// Entry point of the provider Worker (wrangler.toml).
import { createProviderApp } from './app';

export { PrincipalLedger } from '../../durable-objects/principal-ledger';
// Bound only where databases are sold ([env.data]); exporting it everywhere is harmless.
export { DatabaseStore } from '../../durable-objects/database-store';
// The runner's service binding (workers/runner/wrangler.toml) reads deployed Workers through it.
export { WorkerDeployments } from './worker-deployments';

export default createProviderApp();
