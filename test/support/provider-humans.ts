// A provider account's own human, signed in at the provider (PROTOCOL.md §2.0), for tests of its pages and decisions.
import { env } from 'cloudflare:workers';
import { expect } from 'vitest';
import { hashPassword } from '../../workers/lib/passwords';
import { insertHumanAccount } from '../../workers/provider/store/accounts';
import { call } from './fake-orchestrator';

export const PASSWORD = 'correct horse battery staple';

export type ProviderHuman = { account_id: string; email: string; cookie: string; csrf: string };

/** A provider account of its own with a unique email (verified unless said otherwise), signed in. */
export async function newHuman(options: { verified?: boolean } = {}): Promise<ProviderHuman> {
  const testEnv = env as unknown as TestEnv & { PASSWORD_PEPPER: string };
  const email = `human-${crypto.randomUUID()}@example.test`;
  const account_id = (await insertHumanAccount(testEnv.DB, email, await hashPassword(PASSWORD, testEnv.PASSWORD_PEPPER), options.verified ?? true))!;
  const res = await call('/session', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, password: PASSWORD }) });
  expect(res.status).toBe(200);
  const cookie = res.headers
    .getSetCookie()
    .map((c) => c.split(';')[0]!)
    .find((c) => c.startsWith('oap_cloud_session='));
  expect(cookie).toBeDefined();
  const body = (await res.json()) as { account_id: string; csrf_token: string };
  expect(body.account_id).toBe(account_id);
  return { account_id, email, cookie: cookie!, csrf: body.csrf_token };
}
