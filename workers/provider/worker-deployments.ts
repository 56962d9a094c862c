// What the runner (workers/runner) asks the provider over its service binding:
// which version a Worker name serves right now, and that version's source. A
// named entrypoint is reachable only through a service binding, never over HTTP.
import { WorkerEntrypoint } from 'cloudflare:workers';
import type { ProviderBindings } from './env';
import { deploymentByName, moduleOf } from './store/worker-deployments';

export type ServedVersion = { resource_id: string; version: number; suspended: boolean };

export class WorkerDeployments extends WorkerEntrypoint<ProviderBindings> {
  /** Read on every request the runner serves, so a delete or a suspension takes effect at once. */
  async serving(name: string): Promise<ServedVersion | null> {
    const row = await deploymentByName(this.env.DB, name);
    return row ? { resource_id: row.resource_id, version: row.version, suspended: row.suspended_at !== null } : null;
  }

  /** Asked only when the runner's loader has no isolate for this version yet. */
  async source(resourceId: string, version: number): Promise<string | null> {
    return moduleOf(this.env.DB, resourceId, version);
  }
}
