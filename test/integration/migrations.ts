// The provider's D1 schema, beside the orchestrator's (test/setup/migrations.ts), before any test of the integration project runs.
import { applyD1Migrations } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import type { BothRoles } from './both-roles';

const both = env as unknown as BothRoles;
await applyD1Migrations(both.PROVIDER_DB, both.PROVIDER_MIGRATIONS);
