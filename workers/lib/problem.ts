// RFC 9457 problem details: the one error shape of every OAP endpoint but the
// OAuth ones (which keep RFC 6749's). Domain code throws ProblemError with a
// stable `code`; the app's onError turns it into a response.
import { z } from '@hono/zod-openapi';

/** The stable, machine-readable codes of PROTOCOL.md "Codes". */
export const problemCodes = [
  'invalid_request',
  'invalid_parameters',
  'unauthorized',
  'invalid_token',
  'insufficient_scope',
  'human_required',
  'agent_revoked',
  'provider_not_in_scope',
  'out_of_scope',
  'mandate_inactive',
  'spend_limit_exceeded',
  'velocity_limited',
  'domain_unavailable',
  'domain_protected',
  'not_found',
  'method_not_allowed',
  'payload_too_large',
  'unsupported_media_type',
  'idempotency_key_required',
  'idempotency_key_reused',
  'idempotency_request_in_progress',
  'invalid_signature',
  'replayed',
  'slow_down',
  'account_link_required',
  'rate_limited',
  'csrf_failed',
  'reauthentication_required',
  'invalid_user_code',
  'display_changed',
  'price_changed',
  'charge_voided',
  // Not in PROTOCOL.md's list: a server fault that is not the caller's doing.
  'internal_error',
  // Not in PROTOCOL.md's list: a write past a resource's plan quota (a
  // database's rows or bytes). Neither money (402) nor a malformed request:
  // the agent's fix is to delete data or change plan.
  'quota_exceeded',
  // Not in PROTOCOL.md's list: a renewal asked before the period the renewed
  // charge paid for has ended (the shortest its billing can last since it was
  // made, or its receipt's later period_end). The provider tries later, at renews_at.
  'renewal_not_due',
] as const;

export type ProblemCode = (typeof problemCodes)[number];

const titles: Partial<Record<number, string>> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  402: 'Payment Required',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  413: 'Content Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

export const ProblemSchema = z
  .object({
    type: z.string().openapi({ example: 'https://oap.dev/problems/not_found' }),
    title: z.string(),
    status: z.number().int(),
    detail: z.string(),
    code: z.enum(problemCodes),
    instance: z.string().optional().openapi({ description: 'The request id of the failed request.' }),
    errors: z
      .array(z.object({ path: z.string(), message: z.string() }))
      .optional()
      .openapi({ description: 'For 422: each failing input, as a JSON Pointer and a message.' }),
  })
  .catchall(z.unknown())
  .openapi('Problem');

export type Problem = z.infer<typeof ProblemSchema>;

/** A refusal with a stable code. `extra` members go into the problem body (e.g. `limit`, `allow`). */
export class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly code: ProblemCode,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
    this.name = 'ProblemError';
  }

  withExtra(extra: Record<string, unknown>): ProblemError {
    return new ProblemError(this.status, this.code, this.detail, { ...this.extra, ...extra }, this.headers);
  }
}

export function problemBody(status: number, code: ProblemCode, detail: string, extra: Record<string, unknown> = {}): Problem {
  return {
    type: `https://oap.dev/problems/${code}`,
    title: titles[status] ?? 'Error',
    status,
    detail,
    code,
    ...extra,
  };
}

export function problemResponse(error: ProblemError, requestId?: string): Response {
  const body = problemBody(error.status, error.code, error.detail, {
    ...error.extra,
    ...(requestId ? { instance: requestId } : {}),
  });
  return new Response(JSON.stringify(body), {
    status: error.status,
    headers: { 'content-type': 'application/problem+json', ...error.headers },
  });
}

/** Shared response entries for route definitions, so every route documents its problem answers. */
export function problemResponses(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((status) => [
      status,
      { description: titles[status] ?? 'Error', content: { 'application/problem+json': { schema: ProblemSchema } } },
    ]),
  );
}

/** The status each code answers with when a domain refusal does not say otherwise. */
export const statusOfCode: Record<ProblemCode, number> = {
  invalid_request: 400,
  invalid_parameters: 422,
  unauthorized: 401,
  invalid_token: 401,
  insufficient_scope: 403,
  human_required: 403,
  agent_revoked: 401,
  provider_not_in_scope: 403,
  out_of_scope: 402,
  mandate_inactive: 403,
  spend_limit_exceeded: 402,
  velocity_limited: 402,
  domain_unavailable: 409,
  domain_protected: 403,
  not_found: 404,
  method_not_allowed: 405,
  payload_too_large: 413,
  unsupported_media_type: 415,
  idempotency_key_required: 400,
  idempotency_key_reused: 422,
  idempotency_request_in_progress: 409,
  invalid_signature: 401,
  replayed: 401,
  slow_down: 429,
  account_link_required: 400,
  rate_limited: 429,
  csrf_failed: 403,
  reauthentication_required: 401,
  invalid_user_code: 403,
  display_changed: 409,
  price_changed: 409,
  charge_voided: 409,
  internal_error: 500,
  quota_exceeded: 403,
  renewal_not_due: 409,
};

/** Turns a refusal decided inside a ledger object into the problem it answers with. */
export function refusalProblem(refusal: { code: string; detail: string }, status?: number): ProblemError {
  const code = (problemCodes as readonly string[]).includes(refusal.code) ? (refusal.code as ProblemCode) : 'invalid_request';
  return new ProblemError(status ?? statusOfCode[code], code, refusal.detail);
}
