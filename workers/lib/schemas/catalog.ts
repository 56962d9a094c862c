// The provider catalog (PROTOCOL.md §1). A provider instance's catalog is
// configuration (the CATALOG variable: which services, which plans, at what
// price), validated at load, completed by what each service's backend
// describes of itself (workers/provider/catalog.ts).
import { z } from '@hono/zod-openapi';
import { MoneySchema } from './money';

const id = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'a lowercase id');

/** ISO 8601 durations as used for velocity windows: P1D, PT1H, PT15M. */
export const WindowSchema = z.string().regex(/^P(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+S)?)?$/, 'an ISO 8601 duration such as P1D or PT1H');

export const PlanSchema = z
  .object({
    id,
    name: z.string().min(1),
    price: MoneySchema,
    billing: z.enum(['one_time', 'month', 'year']),
    allowed_updates: z.array(id).default([]),
  })
  .openapi('Plan');

const serviceFields = z.object({
  id,
  name: z.string().min(1),
  description: z.string(),
  parameters_schema: z.record(z.string(), z.unknown()).openapi({ description: 'JSON Schema (2020-12) of the provisioning parameters.' }),
  scopes: z.array(z.string().min(1)).min(1),
  provisioning: z.enum(['sync', 'async']),
  limits: z
    .object({
      per_principal: z.object({ count: z.number().int().positive(), window: WindowSchema }).optional(),
    })
    .default({}),
  plans: z.array(PlanSchema).min(1),
});

function checkPlans(service: { id?: string; plans: z.infer<typeof PlanSchema>[] }, ctx: z.RefinementCtx) {
  const planIds = new Set(service.plans.map((p) => p.id));
  if (planIds.size !== service.plans.length) ctx.addIssue({ code: 'custom', path: ['plans'], message: 'plan ids must be unique' });
  for (const [i, plan] of service.plans.entries()) {
    for (const target of plan.allowed_updates) {
      if (!planIds.has(target) || target === plan.id) {
        ctx.addIssue({ code: 'custom', path: ['plans', i, 'allowed_updates'], message: `${target} is not another plan of ${service.id}` });
      }
    }
  }
}

export const ServiceSchema = serviceFields.superRefine(checkPlans).openapi('Service');

/** What a service's backend says of itself (workers/provider/services): the configuration may override any of it. */
export const ServiceDescriptionSchema = serviceFields.pick({ name: true, description: true, parameters_schema: true, scopes: true, provisioning: true });
export type ServiceDescription = z.infer<typeof ServiceDescriptionSchema>;

/**
 * A service as configured: its id, plans and prices, velocity limits; what
 * the backend describes (name, parameters, scopes, sync or async) may be
 * left out, and is then the backend's.
 */
export const ServiceConfigSchema = serviceFields.partial({ name: true, description: true, parameters_schema: true, scopes: true, provisioning: true }).superRefine(checkPlans);

export const CatalogConfigSchema = z
  .object({
    provider: id,
    services: z.array(ServiceConfigSchema),
  })
  .superRefine((catalog, ctx) => {
    const ids = catalog.services.map((s) => s.id);
    if (new Set(ids).size !== ids.length) ctx.addIssue({ code: 'custom', path: ['services'], message: 'service ids must be unique' });
  });

export type CatalogConfig = z.infer<typeof CatalogConfigSchema>;

export const CatalogSchema = z.object({ provider: id, services: z.array(ServiceSchema) }).openapi('Catalog');

export type Catalog = z.infer<typeof CatalogSchema>;
export type Service = z.infer<typeof ServiceSchema>;
export type Plan = z.infer<typeof PlanSchema>;
/** How a plan is billed; a recurring one renews at each period's end. */
export type Billing = Plan['billing'];
export type RecurringBilling = Exclude<Billing, 'one_time'>;
