// Each role's configuration, read from its Worker variables and secrets and
// checked once per isolate. Lists and the catalog may arrive as JSON strings
// (.dev.vars, secrets) or as structured values (wrangler.toml).
import { z } from '@hono/zod-openapi';
import { CatalogConfigSchema } from './schemas/catalog';

const json = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => {
    if (typeof value !== 'string') return value;
    try {
      return JSON.parse(value);
    } catch {
      return value; // left as a string, so the schema names the variable
    }
  }, schema);

const baseUrl = z
  .string()
  .url()
  .transform((u) => u.replace(/\/+$/, ''));

const shared = {
  PUBLIC_BASE_URL: baseUrl,
  SIGNING_KEYS: z.string().optional(),
  /** Keys password hashes (§2.0). Only `.dev.vars` or `wrangler secret put` sets it. */
  PASSWORD_PEPPER: z.string().min(16).optional(),
  /** Only `.dev.vars` sets this: seeded accounts exist in local development alone. */
  DEV_SEED: z
    .string()
    .optional()
    .transform((v) => v === 'true'),
};

export const ProviderConfigSchema = z.object({
  ...shared,
  PROVIDER_ID: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
  PROVIDER_NAME: z.string().min(1),
  TRUSTED_ORCHESTRATORS: json(z.array(baseUrl)),
  /** Service bindings that reach an orchestrator's charges API, by issuer, where one operator runs both. */
  ORCHESTRATOR_BINDINGS: json(z.record(baseUrl, z.string().regex(/^[A-Z][A-Z0-9_]*$/))).default({}),
  CATALOG: json(CatalogConfigSchema),
  /** Labels no account may register, nor a look-alike of (§3.3); unset, the seed list in provider/services/domain-names.ts. */
  PROTECTED_NAMES: json(z.array(z.string().min(1).max(63))).optional(),
  /** The runner's public origin, where deployed Workers answer (needed where worker-script is sold). */
  WORKERS_BASE_URL: baseUrl.optional(),
});

/**
 * A provider the orchestrator knows: its id, base URL and OAuth issuer (its
 * base URL unless said otherwise). `binding` names a service binding to reach
 * it when one operator runs both Workers on one zone, where a plain fetch of
 * another Worker's hostname is not possible.
 */
export const KnownProviderSchema = z
  .object({
    id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
    url: baseUrl,
    issuer: baseUrl.optional(),
    name: z.string().optional(),
    binding: z.string().regex(/^[A-Z][A-Z0-9_]*$/).optional(),
  })
  .transform((p) => ({ ...p, issuer: p.issuer ?? p.url, name: p.name ?? p.id }));

export const OrchestratorConfigSchema = z.object({
  ...shared,
  ORCHESTRATOR_ID: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
  ORCHESTRATOR_NAME: z.string().min(1),
  PROVIDERS: json(z.array(KnownProviderSchema)),
});

export type ProviderConfig = z.infer<typeof ProviderConfigSchema>;
export type OrchestratorConfig = z.infer<typeof OrchestratorConfigSchema>;

const parsed = new WeakMap<object, unknown>();

/** Parses the role's env once; a misconfigured Worker fails loudly naming the variable. */
export function readConfig<T>(schema: z.ZodType<T>, env: object): T {
  let config = parsed.get(env) as T | undefined;
  if (config === undefined) {
    const result = schema.safeParse(env);
    if (!result.success) {
      const where = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      throw new Error(`Worker configuration is invalid: ${where}`);
    }
    config = result.data;
    parsed.set(env, config);
  }
  return config;
}
