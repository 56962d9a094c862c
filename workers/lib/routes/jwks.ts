import { createRoute, OpenAPIHono } from '@hono/zod-openapi';
import { JwksSchema } from '../schemas/discovery';
import { loadSigningKeys } from '../signing-keys';

const jwksRoute = createRoute({
  method: 'get',
  path: '/.well-known/jwks.json',
  summary: "The role's public signing keys (RFC 7517), newest first",
  responses: { 200: { description: 'JWK Set', content: { 'application/json': { schema: JwksSchema } } } },
});

/** Every role publishes its keys the same way; verifiers cache them for an hour. */
export function jwksRoutes() {
  const app = new OpenAPIHono<{ Bindings: { SIGNING_KEYS?: string } }>();
  app.openapi(jwksRoute, async (c) => {
    const { publicJwks } = await loadSigningKeys(c.env.SIGNING_KEYS);
    return c.json(publicJwks as never, 200, { 'cache-control': 'public, max-age=3600' });
  });
  return app;
}
