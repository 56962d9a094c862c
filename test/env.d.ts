// The bindings tests see: the Worker's own plus the test-only migrations list.
type TestEnv = {
  DB: D1Database;
  LEDGER: DurableObjectNamespace<import('../durable-objects/principal-ledger').PrincipalLedger>;
  TEST_MIGRATIONS: import('cloudflare:test').D1Migration[];
  PUBLIC_BASE_URL: string;
  SIGNING_KEYS: string;
};

// The Worker under test, as `exports.default` from cloudflare:workers.
declare namespace Cloudflare {
  interface Exports {
    default: { fetch(request: Request): Promise<Response> };
  }
}
