// The orchestrator Worker and the provider Worker "cloud" in one workerd, each
// with its own D1 database and its own ledger objects, talking as they do when
// deployed: the provider calls the orchestrator's charges API through its
// service binding, the orchestrator reads the provider's catalog and keys and
// pushes its events through its own. One module serves both (by the port a
// request is addressed to) so that a test can reach either role's storage and
// move one clock for both. Only vitest.config.ts's "integration" project uses it.
import { PrincipalLedger } from '../../durable-objects/principal-ledger';
import orchestrator from '../../workers/orchestrator/index';
import provider from '../../workers/provider/index';
import type { ProviderBindings } from '../../workers/provider/env';

// The orchestrator's own bindings are this Worker's (workers/orchestrator/wrangler.toml), its ledger this class.
export { PrincipalLedger };

export type BothRoles = TestEnv & {
  PROVIDER_DB: D1Database;
  PROVIDER_LEDGER: DurableObjectNamespace<ProviderLedger>;
  /** The provider's variables (wrangler.toml's, with the local URLs and fresh secrets). */
  PROVIDER_VARS: Record<string, unknown>;
  PROVIDER_MIGRATIONS: import('cloudflare:test').D1Migration[];
  ORCHESTRATOR: Fetcher;
};

const providerEnvs = new WeakMap<object, ProviderBindings>();

/** The provider's env as its own Worker would see it; one object per env, so that its parsed config is kept. */
export function providerEnv(env: BothRoles): ProviderBindings {
  let mapped = providerEnvs.get(env);
  if (!mapped) {
    mapped = { ...(env.PROVIDER_VARS as unknown as ProviderBindings), DB: env.PROVIDER_DB, LEDGER: env.PROVIDER_LEDGER as never, ORCHESTRATOR: env.ORCHESTRATOR } as ProviderBindings;
    providerEnvs.set(env, mapped);
  }
  return mapped;
}

/** The provider's account ledgers: the same class, seeing the provider's env. */
export class ProviderLedger extends PrincipalLedger {
  constructor(ctx: DurableObjectState, env: BothRoles) {
    super(ctx, providerEnv(env) as never);
  }
}

export const PROVIDER_PORT = '8788';

export default {
  fetch(request: Request, env: BothRoles, ctx: ExecutionContext) {
    if (new URL(request.url).port === PROVIDER_PORT) return provider.fetch(request, providerEnv(env), ctx);
    return orchestrator.fetch(request, env as never, ctx);
  },
};
