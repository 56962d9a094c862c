// Human accounts at a provider (PROTOCOL.md §2.0: "providers the same for
// their own humans"): sign-up with email confirmation, and the account local
// development seeds for the account-linking path (existing@oap.local).
import { sha256Hex } from '../lib/audit';
import { randomToken } from '../lib/jws';
import { confirmationMail, queueMail } from '../lib/mail-outbox';
import { hashPassword } from '../lib/passwords';
import { ProblemError } from '../lib/problem';
import { ledgerOf, pepperOf, providerConfig, type ProviderBindings } from './env';
import { createEmailVerification, humanAccountByEmail, insertHumanAccount, useEmailVerification } from './store/accounts';

export const EXISTING_EMAIL = 'existing@oap.local';

export async function signUpAccount(env: ProviderBindings, email: string, password: string) {
  const id = await insertHumanAccount(env.DB, email, await hashPassword(password, pepperOf(env)), false);
  if (!id) throw new ProblemError(409, 'invalid_request', 'An account with this email already exists; sign in instead.');
  await ledgerOf(env, id).appendAuditEvent(id, { actor: { type: 'principal', id }, action: 'account.create', target: id, outcome: 'succeeded', reason: 'sign_up' });
  const token = randomToken();
  await createEmailVerification(env.DB, id, sha256Hex(token));
  const config = providerConfig(env);
  const mail = confirmationMail(`${config.PUBLIC_BASE_URL}/verify-email?token=${token}`);
  await queueMail(env.DB, email, `${mail.subject} for ${config.PROVIDER_NAME}`, mail.body);
  return { id, email };
}

export async function confirmAccountEmail(env: ProviderBindings, token: string): Promise<string> {
  const id = await useEmailVerification(env.DB, sha256Hex(token));
  if (!id) throw new ProblemError(404, 'not_found', 'This confirmation link is unknown, used or expired.');
  await ledgerOf(env, id).appendAuditEvent(id, { actor: { type: 'principal', id }, action: 'account.confirm_email', target: id, outcome: 'succeeded' });
  return id;
}

let seeded = false;

export async function seedExistingAccount(env: ProviderBindings): Promise<void> {
  if (seeded || !providerConfig(env).DEV_SEED || !env.EXISTING_PASSWORD) return;
  if (!(await humanAccountByEmail(env.DB, EXISTING_EMAIL))) {
    const id = await insertHumanAccount(env.DB, EXISTING_EMAIL, await hashPassword(env.EXISTING_PASSWORD, pepperOf(env)), true);
    if (id) await ledgerOf(env, id).appendAuditEvent(id, { actor: { type: 'system', id: 'dev-seed' }, action: 'account.create', target: id, outcome: 'succeeded', reason: 'dev_seed' });
  }
  seeded = true;
}
