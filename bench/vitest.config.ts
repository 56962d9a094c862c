// `npm run bench`: measurements inside workerd, printed as ratios taken in one
// run (never compared with a fixed number of milliseconds: machines are shared).
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';
import { generateSigningKeys } from '../scripts/signing-key.mjs';

export default defineConfig({
  plugins: [
    cloudflareTest({
      main: './bench/bench-worker.ts',
      wrangler: { configPath: './wrangler.toml' },
      miniflare: {
        bindings: {
          TEST_MIGRATIONS: await readD1Migrations('d1-migrations/provider'),
          SIGNING_KEYS: generateSigningKeys(),
          PASSWORD_PEPPER: 'bench-pepper-not-secret-0123456789',
          DEV_SEED: 'false',
          PUBLIC_BASE_URL: 'http://127.0.0.1:8788',
          TRUSTED_ORCHESTRATORS: JSON.stringify(['http://127.0.0.1:8787']),
          ORCHESTRATOR_BINDINGS: JSON.stringify({ 'http://127.0.0.1:8787': 'ORCHESTRATOR' }),
        },
        // The fake charges API runs in workerd too (bench-worker.ts FakeOrchestrator), as the orchestrator would.
        serviceBindings: { ORCHESTRATOR: { name: 'oap-provider-cloud', entrypoint: 'FakeOrchestrator' } },
        durableObjects: { COUNTER: { className: 'BareCounter', useSQLite: true } },
        // For @cloudflare/workers-oauth-provider, the baseline of the token benchmark.
        kvNamespaces: ['OAUTH_KV'],
      },
    }),
  ],
  // One file at a time: each figure is a ratio within one run, and should not share the two cores with another file.
  test: { name: 'bench', include: ['bench/**/*.bench.ts'], setupFiles: ['test/setup/migrations.ts'], testTimeout: 300_000, fileParallelism: false },
});
