// The service backends of this release. Each keeps its resource as a record in
// D1, unique where the service needs it (a domain name, a Worker name); the
// parts that make them live — registrar checks, serving deployed Workers,
// database storage — arrive with the resources issue.
import { randomToken } from '../../lib/jws';
import type { ProviderBindings } from '../env';
import { ProvisionRefused, registerBackend, type ProvisionContext } from './registry';

async function claim(env: ProviderBindings, kind: string, name: string, ctx: ProvisionContext) {
  const result = await env.DB.prepare(
    `INSERT INTO service_names (kind, name, account_id, resource_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (kind, name) DO UPDATE SET name = name WHERE resource_id = excluded.resource_id`,
  )
    .bind(kind, name, ctx.account_id, ctx.resource_id, new Date().toISOString())
    .run();
  return result.meta.changes === 1;
}

async function taken(env: ProviderBindings, kind: string, name: string) {
  return (await env.DB.prepare('SELECT resource_id FROM service_names WHERE kind = ?1 AND name = ?2').bind(kind, name).first()) !== null;
}

async function release(env: ProviderBindings, resourceId: string) {
  await env.DB.prepare('DELETE FROM service_names WHERE resource_id = ?1').bind(resourceId).run();
}

registerBackend('domain', {
  async precheck(env, ctx) {
    const name = String(ctx.parameters.name).toLowerCase();
    const tld = ctx.plan.split('-')[0];
    if (!name.endsWith(`.${tld}`)) throw new ProvisionRefused('invalid_parameters', `Plan ${ctx.plan} registers .${tld} names; ${name} is not one.`);
    if (await taken(env, 'domain', name)) throw new ProvisionRefused('domain_unavailable', `${name} is not available.`, 409);
  },
  async provision(env, ctx) {
    const name = String(ctx.parameters.name).toLowerCase();
    if (!(await claim(env, 'domain', name, ctx))) throw new ProvisionRefused('domain_unavailable', `${name} is not available.`, 409);
    const expires = new Date(Date.now() + 365 * 24 * 3600 * 1000).toISOString();
    return { fields: { name, expires_at: expires }, credentials: null };
  },
  async deprovision(env, ctx) {
    await release(env, ctx.resource_id);
  },
});

registerBackend('worker-script', {
  async precheck(env, ctx) {
    const name = String(ctx.parameters.name);
    const holder = await env.DB.prepare('SELECT account_id FROM service_names WHERE kind = ?1 AND name = ?2').bind('worker', name).first<{ account_id: string }>();
    if (holder && holder.account_id !== ctx.account_id) throw new ProvisionRefused('invalid_parameters', `The Worker name ${name} is taken.`, 409);
  },
  async provision(env, ctx) {
    const name = String(ctx.parameters.name);
    if (!(await claim(env, 'worker', name, ctx))) throw new ProvisionRefused('invalid_parameters', `The Worker name ${name} is taken.`, 409);
    return { fields: { name, module_bytes: String(ctx.parameters.module).length }, credentials: null };
  },
  async deprovision(env, ctx) {
    await release(env, ctx.resource_id);
  },
});

registerBackend('workers-paid', {
  async provision(_env, ctx) {
    return { fields: { subscription: ctx.plan, renews_at: new Date(Date.now() + 30 * 24 * 3600 * 1000).toISOString() }, credentials: null };
  },
  async deprovision() {},
});

registerBackend('database', {
  async provision(_env, ctx) {
    return {
      fields: { name: String(ctx.parameters.name), region: String(ctx.parameters.region ?? 'auto') },
      credentials: { token: `dbt_${randomToken(24)}` },
    };
  },
  async deprovision() {},
});
