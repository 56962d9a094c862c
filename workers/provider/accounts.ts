// Human accounts at a provider: the one local development seeds for the
// account-linking path (existing@oap.local, password printed by npm start).
import { hashPassword } from '../lib/passwords';
import { ledgerOf, pepperOf, providerConfig, type ProviderBindings } from './env';
import { humanAccountByEmail, insertHumanAccount } from './store/accounts';

export const EXISTING_EMAIL = 'existing@oap.local';

let seeded = false;

export async function seedExistingAccount(env: ProviderBindings): Promise<void> {
  if (seeded || !providerConfig(env).DEV_SEED || !env.EXISTING_PASSWORD) return;
  if (!(await humanAccountByEmail(env.DB, EXISTING_EMAIL))) {
    const id = await insertHumanAccount(env.DB, EXISTING_EMAIL, await hashPassword(env.EXISTING_PASSWORD, pepperOf(env)), true);
    await ledgerOf(env, id).appendAuditEvent(id, { actor: { type: 'system', id: 'dev-seed' }, action: 'account.create', target: id, outcome: 'succeeded', reason: 'dev_seed' });
  }
  seeded = true;
}
