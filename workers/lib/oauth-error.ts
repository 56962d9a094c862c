// OAuth endpoints answer RFC 6749 §5.2 errors, not problem+json, with
// Cache-Control: no-store (PROTOCOL.md §2.3).
export class OAuthError extends Error {
  constructor(
    readonly status: number,
    readonly error: string,
    readonly description: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(description);
  }
}

export function oauthErrorResponse(e: OAuthError): Response {
  return new Response(JSON.stringify({ error: e.error, error_description: e.description, ...e.extra }), {
    status: e.status,
    headers: { 'content-type': 'application/json', 'cache-control': 'no-store', pragma: 'no-cache', ...e.headers },
  });
}
