// Five test projects: one per Worker role running inside workerd (real D1 and
// Durable Objects through @cloudflare/vitest-plugin), one with the orchestrator
// and a provider together in workerd (a clock both share, which a test can
// move), and an end-to-end project in Node that starts the three Workers with
// wrangler dev and drives them over HTTP.
import { cloudflareTest, readD1Migrations } from '@cloudflare/vitest-plugin';
import { defineConfig } from 'vitest/config';
import { unstable_readConfig } from 'wrangler';
import { generateSigningKeys } from './scripts/signing-key.mjs';
import { fakeChargesApi, recordingProvider, testProviderKey } from './test/support/stand-ins';

const providerMigrations = await readD1Migrations('d1-migrations/provider');
const orchestratorMigrations = await readD1Migrations('d1-migrations/orchestrator');

const providerKey = testProviderKey();

// Tests never read the developer's .dev.vars: every variable .dev.vars could set is given here.
const testSecrets = () => ({ SIGNING_KEYS: generateSigningKeys(), PASSWORD_PEPPER: 'test-pepper-not-secret-0123456789', DEV_SEED: 'false' });

const LOCAL = {
  orchestrator: 'http://127.0.0.1:8787',
  cloud: 'http://127.0.0.1:8788',
  data: 'http://127.0.0.1:8789',
};

/** The provider "cloud" at its local URL, trusting the local orchestrator, which it reaches through the ORCHESTRATOR binding. */
const cloudBindings = () => ({
  ...testSecrets(),
  PUBLIC_BASE_URL: LOCAL.cloud,
  TRUSTED_ORCHESTRATORS: JSON.stringify([LOCAL.orchestrator]),
  ORCHESTRATOR_BINDINGS: JSON.stringify({ [LOCAL.orchestrator]: 'ORCHESTRATOR' }),
});

export default defineConfig({
  test: {
    projects: [
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: './wrangler.toml' },
            miniflare: {
              bindings: { TEST_MIGRATIONS: providerMigrations, ...cloudBindings() },
              serviceBindings: { ORCHESTRATOR: fakeChargesApi() },
            },
          }),
        ],
        test: { name: 'provider', include: ['test/provider/**/*.test.ts', 'test/lib/**/*.test.ts'], setupFiles: ['test/setup/migrations.ts'] },
      },
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: './wrangler.toml', environment: 'data' },
            miniflare: {
              bindings: {
                TEST_MIGRATIONS: providerMigrations,
                ...testSecrets(),
                PUBLIC_BASE_URL: LOCAL.data,
                TRUSTED_ORCHESTRATORS: JSON.stringify([LOCAL.orchestrator]),
              },
            },
          }),
        ],
        test: { name: 'provider-data', include: ['test/provider-data/**/*.test.ts'], setupFiles: ['test/setup/migrations.ts'] },
      },
      {
        plugins: [
          cloudflareTest({
            wrangler: { configPath: './workers/orchestrator/wrangler.toml' },
            miniflare: {
              bindings: {
                TEST_MIGRATIONS: orchestratorMigrations,
                ...testSecrets(),
                PUBLIC_BASE_URL: LOCAL.orchestrator,
                TEST_PROVIDER_KEY: JSON.stringify(providerKey.privateJwk),
                PROVIDERS: JSON.stringify([
                  { id: 'cloud', name: 'OAP Cloud', url: LOCAL.cloud, binding: 'PROVIDER_CLOUD' },
                  { id: 'data', name: 'OAP Data', url: LOCAL.data, binding: 'PROVIDER_DATA' },
                ]),
              },
              serviceBindings: { PROVIDER_CLOUD: recordingProvider(providerKey.publicJwk), PROVIDER_DATA: recordingProvider(providerKey.publicJwk) },
            },
          }),
        ],
        test: { name: 'orchestrator', include: ['test/orchestrator/**/*.test.ts'], setupFiles: ['test/setup/migrations.ts'] },
      },
      {
        // The orchestrator and the provider "cloud" in one workerd (test/integration/both-roles.ts): what only
        // both real roles together show, with one clock a test can move for both (a subscription's renewals).
        plugins: [
          cloudflareTest({
            main: './test/integration/both-roles.ts',
            wrangler: { configPath: './workers/orchestrator/wrangler.toml' },
            miniflare: {
              bindings: {
                TEST_MIGRATIONS: orchestratorMigrations,
                PROVIDER_MIGRATIONS: providerMigrations,
                ...testSecrets(),
                PUBLIC_BASE_URL: LOCAL.orchestrator,
                PROVIDERS: JSON.stringify([{ id: 'cloud', name: 'OAP Cloud', url: LOCAL.cloud, binding: 'PROVIDER_CLOUD' }]),
                PROVIDER_VARS: { ...unstable_readConfig({ config: './wrangler.toml' }).vars, ...cloudBindings() },
              },
              d1Databases: ['PROVIDER_DB'],
              durableObjects: { PROVIDER_LEDGER: { className: 'ProviderLedger', useSQLite: true } },
              // Each role reaches the other through this Worker, which serves both by port.
              serviceBindings: { ORCHESTRATOR: 'oap-orchestrator', PROVIDER_CLOUD: 'oap-orchestrator' },
            },
          }),
        ],
        test: { name: 'integration', include: ['test/integration/**/*.test.ts'], setupFiles: ['test/setup/migrations.ts', 'test/integration/migrations.ts'] },
      },
      {
        test: {
          name: 'e2e',
          environment: 'node',
          include: ['test/e2e/**/*.test.ts'],
          globalSetup: ['test/e2e/global-setup.ts'],
          testTimeout: 30_000,
          hookTimeout: 120_000,
        },
      },
    ],
  },
});
