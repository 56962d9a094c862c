// `worker-script` (provider cloud): an ES module deployed under a name.
import { claimName, nameHolder, releaseNames } from './names';
import { ProvisionRefused, registerBackend } from './registry';

registerBackend('worker-script', {
  async check(env, ctx) {
    const name = String(ctx.parameters.name);
    const holder = await nameHolder(env, 'worker', name);
    if (holder && holder.account_id !== ctx.account_id) throw new ProvisionRefused('invalid_parameters', `The Worker name ${name} is taken.`, 409);
  },
  async provision(env, ctx) {
    const name = String(ctx.parameters.name);
    if (!(await claimName(env, 'worker', name, ctx))) throw new ProvisionRefused('invalid_parameters', `The Worker name ${name} is taken.`, 409);
    return { fields: { name, module_bytes: String(ctx.parameters.module).length }, credentials: null };
  },
  async deprovision(env, ref) {
    await releaseNames(env, ref.resource_id);
  },
});
