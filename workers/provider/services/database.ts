// `database` (provider data): one DatabaseStore object per resource holds the
// agent's SQLite database, reached over HTTP with the credential issued at
// creation (routes/databases.ts). The object keeps only the credential's hash.
import type { DatabaseQuota, DatabaseStore } from '../../../durable-objects/database-store';
import { sha256Hex } from '../../lib/audit';
import { randomToken } from '../../lib/jws';
import { providerConfig, type ProviderBindings } from '../env';
import { registerBackend, type ResourceRef } from './registry';

/**
 * The plans' quotas, by plan id. The catalog's plan schema has no field for
 * them (zod drops unknown keys from CATALOG), so they live beside the code
 * that enforces them; the catalog's plan names state the same numbers.
 */
export const DATABASE_QUOTAS: Readonly<Record<string, DatabaseQuota>> = {
  free: { rows: 10_000, bytes: 5_000_000 },
  pro: { rows: 10_000_000, bytes: 10_000_000_000 },
};

/** The catalog's regions are Durable Object location hints; `auto` lets the platform place it near its first caller. */
const LOCATION_HINTS = new Set<string>(['wnam', 'enam', 'weur', 'apac']);

export function quotaOf(plan: string): DatabaseQuota {
  const quota = DATABASE_QUOTAS[plan];
  if (!quota) throw new Error(`No quota is configured for database plan ${plan} (services/database.ts).`);
  return quota;
}

/** The resource's object, or null on an instance that does not offer databases. */
export function databaseStore(env: ProviderBindings, resourceId: string, region?: string): DurableObjectStub<DatabaseStore> | null {
  if (!env.DATABASES) return null;
  const id = env.DATABASES.idFromName(resourceId);
  return region && LOCATION_HINTS.has(region) ? env.DATABASES.get(id, { locationHint: region as DurableObjectLocationHint }) : env.DATABASES.get(id);
}

function storeOf(env: ProviderBindings, resourceId: string, region?: string): DurableObjectStub<DatabaseStore> {
  const store = databaseStore(env, resourceId, region);
  if (!store) throw new Error('The DATABASES binding is missing: this provider instance cannot hold databases.');
  return store;
}

export const databaseUrl = (env: ProviderBindings, resourceId: string) => `${providerConfig(env).PUBLIC_BASE_URL}/v1/databases/${resourceId}`;

/**
 * A credential is 192 random bits, so one unsalted SHA-256 is safe to keep
 * (there is no dictionary to try against it) and lets a request be checked by
 * comparing hashes.
 */
export const credentialHash = (token: string) => sha256Hex(token);

function newCredential(env: ProviderBindings, resourceId: string) {
  const token = `dbt_${randomToken(24)}`;
  return { hash: credentialHash(token), credentials: { token, url: databaseUrl(env, resourceId) } };
}

registerBackend('database', {
  describe: {
    name: 'Serverless SQL database',
    description: 'A SQLite database reachable over HTTP with the credential issued at creation. Provisioned asynchronously.',
    parameters_schema: {
      type: 'object',
      required: ['name'],
      additionalProperties: false,
      properties: {
        name: { type: 'string', pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' },
        region: { type: 'string', enum: ['auto', 'wnam', 'enam', 'weur', 'apac'], default: 'auto' },
      },
    },
    scopes: ['databases:write'],
    provisioning: 'async',
  },
  async check(env, ctx) {
    // A configuration fault, found before any money moves.
    quotaOf(ctx.plan);
    if (!env.DATABASES) throw new Error('The DATABASES binding is missing: this provider instance cannot hold databases.');
  },

  /**
   * Provisioning may run twice for one resource (the saga retries after a
   * crash). The second run replaces the credential: the first one was never
   * shown (its response did not complete the saga), and the object keeps no
   * credential it could hand back, only its hash. So whichever run completes
   * the saga returns the one credential that works.
   */
  async provision(env, ctx) {
    const region = String(ctx.parameters.region ?? 'auto');
    const quota = quotaOf(ctx.plan);
    const { hash, credentials } = newCredential(env, ctx.resource_id);
    const created = await storeOf(env, ctx.resource_id, region).create({ resource_id: ctx.resource_id, quota, credential_hash: hash });
    if (!created.ok) throw new Error(`Database ${ctx.resource_id} was deleted before its provisioning finished.`);
    return { fields: { name: String(ctx.parameters.name), region, url: databaseUrl(env, ctx.resource_id), quota }, credentials };
  },

  async deprovision(env, ref) {
    await storeOf(env, ref.resource_id).destroy();
  },

  async rotate(env, ref) {
    const { hash, credentials } = newCredential(env, ref.resource_id);
    if (!(await storeOf(env, ref.resource_id).rotate(hash)).ok) throw new Error(`Database ${ref.resource_id} does not exist.`);
    return { fields: ref.fields, credentials };
  },

  async suspend(env, ref) {
    await storeOf(env, ref.resource_id).suspend();
  },

  /** A paid renewal lifts a suspension. */
  async renew(env, ref) {
    await storeOf(env, ref.resource_id).resume();
    return ref.fields;
  },

  async changePlan(env, ref: ResourceRef, plan) {
    const quota = quotaOf(plan);
    await storeOf(env, ref.resource_id).setQuota(quota);
    return { ...ref.fields, quota };
  },
});
