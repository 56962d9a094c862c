import { z } from '@hono/zod-openapi';

/** PROTOCOL.md Conventions: integer minor units and a lowercase ISO 4217 code. */
export const MoneySchema = z
  .object({
    amount: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    currency: z.string().regex(/^[a-z]{3}$/, 'a lowercase ISO 4217 code'),
  })
  .openapi('Money', { example: { amount: 1044, currency: 'usd' } });

export type Money = z.infer<typeof MoneySchema>;
