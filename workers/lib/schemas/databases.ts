// A provisioned database's HTTP API: one SQL statement per request, with the
// credential issued when the database was created or last rotated.
import { z } from '@hono/zod-openapi';

/** workerd's own ceilings for one statement (100 KB of SQL, 100 bound parameters). */
export const MAX_SQL_LENGTH = 100_000;
export const MAX_SQL_PARAMS = 100;

export const SqlParamSchema = z.union([z.string(), z.number(), z.boolean(), z.null()]).openapi({ description: 'Bound to `?` or `?NNN` in order; booleans bind as 1 and 0.' });

export const SqlCellSchema = z
  .union([z.string(), z.number(), z.null(), z.object({ base64: z.string() }).openapi({ description: 'A BLOB, base64-encoded' })])
  .openapi('SqlCell');

export const QueryRequestSchema = z
  .object({
    sql: z.string().min(1).max(MAX_SQL_LENGTH).openapi({ example: 'SELECT id, total FROM orders WHERE id = ?' }),
    params: z.array(SqlParamSchema).max(MAX_SQL_PARAMS).default([]),
  })
  .openapi('QueryRequest');

export const QueryResultSchema = z
  .object({
    columns: z.array(z.string()),
    rows: z.array(z.array(SqlCellSchema)).openapi({ description: 'One array per row, values in the order of `columns`.' }),
    rows_read: z.number().int().nonnegative(),
    rows_written: z.number().int().nonnegative(),
  })
  .openapi('QueryResult');

export type QueryRequest = z.infer<typeof QueryRequestSchema>;
