// The HTTP shell every role shares: request ids, body limits, one place that
// maps validation errors and one that maps thrown errors to problem+json,
// 404/405 for paths and methods no route serves, and /openapi.json.
import { OpenAPIHono, type Hook } from '@hono/zod-openapi';
import type { Context, Env as HonoEnv, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { HTTPException } from 'hono/http-exception';
import { OAuthError, oauthErrorResponse } from './oauth-error';
import { ProblemError, problemResponse } from './problem';

/** PROTOCOL.md Conventions: bodies over 1 MiB are refused. */
export const MAX_BODY_BYTES = 1024 * 1024;

export type RoleVariables = { requestId: string };
export type RoleEnv<Bindings> = { Bindings: Bindings; Variables: RoleVariables };

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
/** The media type of a request's body, without parameters, in lower case. */
const mediaTypeOf = (c: Context) => (c.req.header('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
const isJson = (mediaType: string) => mediaType === 'application/json' || mediaType.endsWith('+json');

/** True when JSON text names a lone surrogate in a string or a member name; text that does not parse is left to the route. */
function hasLoneSurrogate(json: string): boolean {
  if (!json.includes('\\u')) return false; // only an escape can make one: the text itself was decoded as UTF-8
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return false;
  }
  const lone = (v: unknown): boolean => {
    if (typeof v === 'string') return !v.isWellFormed();
    if (Array.isArray(v)) return v.some(lone);
    if (v !== null && typeof v === 'object') return Object.entries(v).some(([key, member]) => !key.isWellFormed() || lone(member));
    return false;
  };
  return lone(value);
}

/** A validation failure as 422, each failing path a JSON Pointer (RFC 6901); `detail` is given the first. */
export function validationProblem(issues: readonly { path: readonly PropertyKey[]; message: string }[], detail: (first: { path: string; message: string } | undefined) => string): ProblemError {
  const errors = issues.map((issue) => ({
    path: '/' + issue.path.map((p) => String(p).replaceAll('~', '~0').replaceAll('/', '~1')).join('/'),
    message: issue.message,
  }));
  return new ProblemError(422, 'invalid_request', detail(errors[0]), { errors });
}

/**
 * Validation failures of a route's declared schemas become 422, except in the path: an id not of the kind the path
 * names (`/v1/mandates/foo`) names nothing there, as any unknown path (404, as an id of the right kind that does not exist).
 */
export const validationHook: Hook<unknown, HonoEnv, string, unknown> = (result) => {
  if (result.success) return;
  if (result.target === 'param') throw new ProblemError(404, 'not_found', 'Nothing is at this path.');
  const where = result.target === 'json' || result.target === 'form' ? 'body' : result.target;
  throw validationProblem(result.error.issues, (first) => `The request ${where} is invalid${first ? `: ${first.path} ${first.message}` : ''}.`);
};

/**
 * A refusal in the form its path speaks: RFC 9457 problem+json, except on the
 * OAuth endpoints, which answer RFC 6749 errors (uncacheable) whatever went
 * wrong (§2.3). Outside RFC 6749's own cases (a wrong method, a body too large,
 * a media type) the status stays and the error is invalid_request.
 */
function errorResponse(c: Context, problem: ProblemError): Response {
  if (c.req.path.startsWith('/oauth/')) {
    const status = problem.status === 415 ? 400 : problem.status;
    return oauthErrorResponse(new OAuthError(status, 'invalid_request', problem.detail, {}, problem.headers));
  }
  return problemResponse(problem, c.get('requestId'));
}

export function createRoleApp<Bindings extends object>() {
  const app = new OpenAPIHono<RoleEnv<Bindings>>({ defaultHook: validationHook as never });

  app.use('*', async (c, next) => {
    const incoming = c.req.header('x-request-id');
    const requestId = incoming && REQUEST_ID.test(incoming) ? incoming : `req_${crypto.randomUUID().replaceAll('-', '')}`;
    c.set('requestId', requestId);
    await next();
    c.res.headers.set('X-Request-Id', requestId);
  });

  app.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new ProblemError(413, 'payload_too_large', `Request bodies are limited to ${MAX_BODY_BYTES} bytes.`);
      },
    }),
  );

  // RFC 8259 §8.2: JSON text is Unicode, but an escape can name half a surrogate pair ("\ud800"), which no
  // storage, hash (RFC 8785) or page can carry. Refused here, once, before any route reads the body.
  app.use('*', async (c, next) => {
    if (isJson(mediaTypeOf(c)) && hasLoneSurrogate(await c.req.text())) {
      // As a body that does not parse: onError answers 400 invalid_request, in RFC 6749's form on OAuth paths.
      throw new HTTPException(400, { message: 'The body has text that is not well-formed Unicode (a lone surrogate escape).' });
    }
    await next();
  });

  app.onError((error, c) => {
    const requestId = c.get('requestId');
    if (error instanceof ProblemError) return errorResponse(c, error);
    if (error instanceof OAuthError) return oauthErrorResponse(error);
    if (error instanceof HTTPException && error.status < 500) {
      // Hono's validators throw 400 for a body that does not parse, and 415 for a media type a route does not take.
      if (error.status === 415) return errorResponse(c, new ProblemError(415, 'unsupported_media_type', 'The request body has a media type this endpoint does not take.'));
      return errorResponse(c, new ProblemError(error.status, 'invalid_request', error.message || 'The request is malformed.'));
    }
    console.error(JSON.stringify({ level: 'error', request_id: requestId, message: String(error), stack: (error as Error)?.stack }));
    return problemResponse(new ProblemError(500, 'internal_error', 'The server failed to handle the request.'), requestId);
  });

  app.notFound((c) => {
    const allowed = allowedMethods(app, c.req.path);
    if (allowed.length > 0) {
      return errorResponse(c, new ProblemError(405, 'method_not_allowed', `${c.req.method} is not allowed on ${c.req.path}.`, { allow: allowed }, { Allow: allowed.join(', ') }));
    }
    return errorResponse(c, new ProblemError(404, 'not_found', `No resource at ${c.req.path}.`));
  });

  return app;
}

/** Publishes the role's OpenAPI 3.1 document, generated from the route schemas. */
export function serveOpenApiDocument(app: OpenAPIHono<any>, info: { title: string; version: string; description: string }, baseUrl: (c: Context) => string) {
  app.get('/openapi.json', (c) =>
    c.json(
      app.getOpenAPI31Document({
        openapi: '3.1.0',
        info,
        servers: [{ url: baseUrl(c) }],
      }),
    ),
  );
}

const methodsCache = new WeakMap<object, { method: string; pattern: RegExp }[]>();

/** The methods some route serves at `path`, for 405 and `Allow` (RFC 9110 §15.5.6). */
export function allowedMethods(app: OpenAPIHono<any>, path: string): string[] {
  let routes = methodsCache.get(app);
  if (!routes) {
    routes = app.routes
      .filter((r) => r.method !== 'ALL')
      .map((r) => ({ method: r.method, pattern: routePattern(r.path) }));
    methodsCache.set(app, routes);
  }
  const methods = new Set(routes.filter((r) => r.pattern.test(path)).map((r) => r.method));
  if (methods.has('GET')) methods.add('HEAD');
  return [...methods].sort();
}

function routePattern(path: string): RegExp {
  const source = path
    .split('/')
    .map((segment) => (segment.startsWith(':') ? '[^/]+' : segment === '*' ? '.*' : segment.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}/?$`);
}

/**
 * Route middleware that refuses a body of the wrong media type with 415 before
 * validation. It runs after the route's authentication middleware, so an
 * unauthenticated caller learns nothing about the body rules.
 */
export function acceptBody(...mediaTypes: ('json' | 'form')[]): MiddlewareHandler {
  return async (c, next) => {
    const contentType = mediaTypeOf(c);
    const ok =
      (mediaTypes.includes('json') && isJson(contentType)) ||
      (mediaTypes.includes('form') && (contentType === 'application/x-www-form-urlencoded' || contentType === 'multipart/form-data'));
    if (!ok) {
      const expected = mediaTypes.map((t) => (t === 'json' ? 'application/json' : 'application/x-www-form-urlencoded')).join(' or ');
      throw new ProblemError(415, 'unsupported_media_type', `The request body must be ${expected}.`);
    }
    await next();
  };
}
