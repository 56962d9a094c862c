// The provider catalog (PROTOCOL.md §1). A provider instance's catalog is
// configuration (the CATALOG variable), validated by this schema at load.
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

export const ServiceSchema = z
  .object({
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
  })
  .superRefine((service, ctx) => {
    const planIds = new Set(service.plans.map((p) => p.id));
    if (planIds.size !== service.plans.length) ctx.addIssue({ code: 'custom', path: ['plans'], message: 'plan ids must be unique' });
    for (const [i, plan] of service.plans.entries()) {
      for (const target of plan.allowed_updates) {
        if (!planIds.has(target) || target === plan.id) {
          ctx.addIssue({ code: 'custom', path: ['plans', i, 'allowed_updates'], message: `${target} is not another plan of ${service.id}` });
        }
      }
    }
  })
  .openapi('Service');

export const CatalogSchema = z
  .object({
    provider: id,
    services: z.array(ServiceSchema),
  })
  .superRefine((catalog, ctx) => {
    const ids = catalog.services.map((s) => s.id);
    if (new Set(ids).size !== ids.length) ctx.addIssue({ code: 'custom', path: ['services'], message: 'service ids must be unique' });
  })
  .openapi('Catalog');

export type Catalog = z.infer<typeof CatalogSchema>;
export type Service = z.infer<typeof ServiceSchema>;
export type Plan = z.infer<typeof PlanSchema>;
