// The service backends of this provider build. A platform team adds its own
// by writing one module that calls registerBackend and importing it here
// (docs/services.md).
import './domain';
import './worker-script';
import './workers-paid';
import './database';

export { backendFor, ProvisionRefused } from './registry';
export type { ProvisionContext, Provisioned, ResourceRef, ServiceBackend } from './registry';
