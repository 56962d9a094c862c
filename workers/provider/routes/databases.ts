// A database's HTTP API (provider "data"): `POST {url}/query` where `url` is
// the resource's `url` field, authenticated by its credential alone (no DPoP:
// the credential is what the agent hands to its own deployed code).
import { createRoute, OpenAPIHono, z } from '@hono/zod-openapi';
import { createMiddleware } from 'hono/factory';
import { acceptBody, type RoleEnv } from '../../lib/app';
import { problemResponses } from '../../lib/problem';
import { QueryRequestSchema, QueryResultSchema } from '../../lib/schemas/databases';
import { authorizeDatabase, queryDatabase } from '../databases';
import type { ProviderBindings } from '../env';

type Env = RoleEnv<ProviderBindings> & { Variables: { credentialHash: string } };

/** Before the body is read (PROTOCOL.md Conventions): a caller without the credential learns nothing about it. */
const requireDatabaseCredential = createMiddleware<Env>(async (c, next) => {
  c.set('credentialHash', await authorizeDatabase(c.env, c.req.param('id') ?? '', c.req.header('authorization')));
  await next();
});

export function databaseRoutes() {
  const app = new OpenAPIHono<Env>();

  app.openapi(
    createRoute({
      method: 'post',
      path: '/v1/databases/{id}/query',
      summary: 'Run SQL against a database with its credential',
      description:
        'SQLite, in one transaction: a failing statement changes nothing. Rows come back as arrays in the order of `columns`. A write that would pass the plan’s quota (rows or bytes) is 403 quota_exceeded and undone; reads and deletes always work. A suspended database answers reads only.',
      middleware: [requireDatabaseCredential, acceptBody('json')] as const,
      request: {
        headers: z.object({ authorization: z.string().optional().openapi({ description: 'Bearer <the database credential>' }) }),
        params: z.object({ id: z.string().openapi({ example: 'res_01JZ5Y1W8Q3V4M9T2N6B7C0D1E' }) }),
        body: { required: true, content: { 'application/json': { schema: QueryRequestSchema } } },
      },
      responses: {
        200: { description: 'The statement’s result', content: { 'application/json': { schema: QueryResultSchema } } },
        ...problemResponses(400, 401, 402, 403, 404, 413, 415, 422),
      },
    }),
    async (c) => {
      const { sql, params } = c.req.valid('json');
      const result = await queryDatabase(c.env, c.req.valid('param').id, c.get('credentialHash'), sql, params);
      // The agent's data: never kept by a cache between it and us.
      return c.json(result, 200, { 'Cache-Control': 'no-store' });
    },
  );

  return app;
}
