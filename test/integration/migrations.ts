// Both roles' D1 schemas, before any test of the integration project runs.
import { applyD1Migrations } from 'cloudflare:test';
import { env } from 'cloudflare:workers';
import type { BothRoles } from './both-roles';

const both = env as unknown as BothRoles;
await applyD1Migrations(both.DB, both.TEST_MIGRATIONS);
await applyD1Migrations(both.PROVIDER_DB, both.PROVIDER_MIGRATIONS);
