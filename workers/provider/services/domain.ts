// `domain` (provider cloud): a name registered for a year, unique across accounts.
import type { ProviderBindings } from '../env';
import { claimName, nameHolder, releaseNames } from './names';
import { ProvisionRefused, registerBackend, type ProvisionContext } from './registry';

const YEAR_MS = 365 * 24 * 3600 * 1000;

function requestedName(ctx: ProvisionContext) {
  return String(ctx.parameters.name).toLowerCase();
}

registerBackend('domain', {
  async check(env: ProviderBindings, ctx) {
    const name = requestedName(ctx);
    const tld = ctx.plan.split('-')[0];
    if (!name.endsWith(`.${tld}`)) throw new ProvisionRefused('invalid_parameters', `Plan ${ctx.plan} registers .${tld} names; ${name} is not one.`);
    if (await nameHolder(env, 'domain', name)) throw new ProvisionRefused('domain_unavailable', `${name} is not available.`, 409);
  },
  async provision(env, ctx) {
    const name = requestedName(ctx);
    if (!(await claimName(env, 'domain', name, ctx))) throw new ProvisionRefused('domain_unavailable', `${name} is not available.`, 409);
    return { fields: { name, expires_at: new Date(Date.now() + YEAR_MS).toISOString() }, credentials: null };
  },
  async deprovision(env, ref) {
    await releaseNames(env, ref.resource_id);
  },
  async renew(_env, ref, until) {
    return { ...ref.fields, expires_at: until.toISOString() };
  },
});
