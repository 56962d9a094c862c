// `worker-script` (provider cloud): an ES module deployed under a name and
// served by the runner (workers/runner) at <WORKERS_BASE_URL>/<name>/. The
// module is checked before any money moves; a redeploy of a name by the
// account that holds it is a new paid resource that takes the name over with
// the next version. The name's row in worker_deployments is the one record of
// who holds it and what it serves.
import { providerConfig, type ProviderBindings } from '../env';
import { deployModule, deploymentByName, removeDeployment, resumeDeployment, suspendDeployment } from '../store/worker-deployments';
import { checkWorkerModule, measureModule, MODULE_MAX_BYTES } from './worker-module';
import { ProvisionRefused, registerBackend, type ProvisionContext } from './registry';

function workersBaseUrl(env: ProviderBindings): string {
  const base = providerConfig(env).WORKERS_BASE_URL;
  if (!base) throw new Error('WORKERS_BASE_URL is not set: where the runner serves deployed Workers (wrangler.toml [vars])');
  return base;
}

const nameTaken = (name: string) => new ProvisionRefused('invalid_parameters', `The Worker name ${name} is taken.`, 409);

async function checkName(env: ProviderBindings, ctx: ProvisionContext) {
  const name = String(ctx.parameters.name);
  const holder = await deploymentByName(env.DB, name);
  if (holder && holder.account_id !== ctx.account_id) throw nameTaken(name);
}

registerBackend('worker-script', {
  describe: {
    name: 'Worker deployment',
    description: 'Deploys an ES module Worker that serves HTTP requests on its own origin. Redeploying the same name makes a new version.',
    parameters_schema: {
      type: 'object',
      required: ['name', 'module'],
      additionalProperties: false,
      properties: {
        name: { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' },
        module: { type: 'string', minLength: 1, maxLength: MODULE_MAX_BYTES, description: 'The ES module source; it must export default { fetch }.' },
      },
    },
    scopes: ['workers:write'],
    provisioning: 'sync',
  },
  async check(env, ctx) {
    workersBaseUrl(env);
    checkWorkerModule(String(ctx.parameters.module));
    await checkName(env, ctx);
  },
  async provision(env, ctx) {
    const name = String(ctx.parameters.name);
    const module = String(ctx.parameters.module);
    // check() passed for these very parameters before the charge.
    const { bytes, sha256 } = measureModule(module);
    const previous = await deploymentByName(env.DB, name);
    const serving = await deployModule(env.DB, { name, account_id: ctx.account_id, resource_id: ctx.resource_id, module, module_sha256: sha256, module_bytes: bytes });
    // Another account deployed this name between the check and now.
    if (serving.resource_id !== ctx.resource_id) throw nameTaken(name);
    const replaced = previous && previous.account_id === ctx.account_id && previous.resource_id !== ctx.resource_id ? previous.resource_id : undefined;
    return {
      fields: { name, url: `${workersBaseUrl(env)}/${name}/`, version: serving.version, module_bytes: bytes, module_sha256: sha256 },
      credentials: null,
      ...(replaced ? { supersedes: replaced } : {}),
    };
  },
  async deprovision(env, ref) {
    // Stops serving at once: the runner reads the row on every request. A version a
    // redeploy replaced holds no row, so removing it leaves the newer one serving.
    await removeDeployment(env.DB, ref.resource_id);
  },
  async suspend(env, ref) {
    await suspendDeployment(env.DB, ref.resource_id);
  },
  /** Sold one-time as published; a catalog that bills it monthly renews it, and a paid renewal serves it again. */
  async renew(env, ref) {
    await resumeDeployment(env.DB, ref.resource_id);
    return ref.fields;
  },
});
