// Domain search (docs/protocol.md "Domain names"). Public like the catalog:
// an agent picks a name it can register before it spends anything.
import { createRoute, OpenAPIHono, type Hook } from '@hono/zod-openapi';
import type { Env as HonoEnv } from 'hono';
import type { RoleEnv } from '../../lib/app';
import { ProblemError, problemResponses } from '../../lib/problem';
import { DomainSearchQuerySchema, DomainSearchSchema } from '../../lib/schemas/domains';
import { searchDomains } from '../domain-search';
import type { ProviderBindings } from '../env';

const searchRoute = createRoute({
  method: 'get',
  path: '/v1/domains/search',
  summary: 'Domain names for some keywords, marked available only when a registration would pass the squatting guard',
  request: { query: DomainSearchQuerySchema },
  responses: {
    200: { description: 'Suggestions, in the order a registrar would offer them', content: { 'application/json': { schema: DomainSearchSchema } } },
    ...problemResponses(404, 422),
  },
});

/** A bad query is `invalid_parameters`, like a bad provisioning parameter, not the generic `invalid_request`. */
const invalidParameters: Hook<unknown, HonoEnv, string, unknown> = (result) => {
  if (result.success) return;
  const errors = result.error.issues.map((issue) => ({ path: `/${issue.path.join('/')}`, message: issue.message }));
  throw new ProblemError(422, 'invalid_parameters', `The search query is invalid: ${errors[0]?.path} ${errors[0]?.message}.`, { errors });
};

export function domainRoutes() {
  const app = new OpenAPIHono<RoleEnv<ProviderBindings>>();

  app.openapi(
    searchRoute,
    async (c) => {
      const { q, limit } = c.req.valid('query');
      return c.json({ query: q, data: await searchDomains(c.env, q, limit) }, 200);
    },
    invalidParameters as never,
  );

  return app;
}
