// Lists (PROTOCOL.md Conventions): {data, has_more} with ?limit= and ?starting_after=.
import { z } from '@hono/zod-openapi';

export const ListQuerySchema = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(20).openapi({ description: 'At most this many items (1–100, default 20)' }),
  starting_after: z.string().optional().openapi({ description: 'The id of the last item of the previous page' }),
});

export type ListQuery = z.infer<typeof ListQuerySchema>;

/** One page of an ordered list; an unknown cursor yields an empty page rather than the first one. */
export function paginate<T>(items: T[], query: ListQuery, idOf: (item: T) => string): { data: T[]; has_more: boolean } {
  let start = 0;
  if (query.starting_after !== undefined) {
    const index = items.findIndex((item) => idOf(item) === query.starting_after);
    start = index === -1 ? items.length : index + 1;
  }
  const data = items.slice(start, start + query.limit);
  return { data, has_more: start + query.limit < items.length };
}
