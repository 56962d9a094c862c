// Domain search on the wire (GET /v1/domains/search): what a registrar offers
// for some keywords, each name marked as the squatting guard (PROTOCOL.md §3.3)
// would judge it for an account that holds nothing.
import { z } from '@hono/zod-openapi';
import { MoneySchema } from './money';

export const DomainSearchQuerySchema = z.object({
  q: z.string().min(1).max(200).openapi({ description: 'Keywords, e.g. "coffee shop"; a trailing .tld puts that TLD first', example: 'coffee shop' }),
  limit: z.coerce.number().int().min(1).max(100).default(20).openapi({ description: 'At most this many names (1–100, default 20)' }),
});

export const DomainSuggestionSchema = z
  .object({
    name: z.string().openapi({ description: 'The domain as registered: ASCII, IDN labels as punycode', example: 'xn--mnchen-3ya.com' }),
    name_unicode: z.string().openapi({ example: 'münchen.com' }),
    available: z.boolean().openapi({ description: 'True only when a registration would pass every check that needs no money' }),
    reason: z.enum(['taken', 'protected']).optional().openapi({ description: 'Why not: held already, or too close to a protected or held name' }),
    price: MoneySchema,
    plan: z.string().openapi({ description: 'The plan that registers it', example: 'com-1y' }),
  })
  .openapi('DomainSuggestion');

export const DomainSearchSchema = z
  .object({
    query: z.string(),
    data: z.array(DomainSuggestionSchema),
  })
  .openapi('DomainSearch');

export type DomainSuggestion = z.infer<typeof DomainSuggestionSchema>;
