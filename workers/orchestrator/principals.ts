// Principals (PROTOCOL.md §2.0): sign-up, email confirmation by a one-time
// link, and the demo principal that local development seeds.
import { randomToken } from '../lib/jws';
import { hashPassword } from '../lib/passwords';
import { ProblemError } from '../lib/problem';
import { ledgerOf, orchestratorConfig, pepperOf, type OrchestratorBindings } from './env';
import { confirmationMail, queueMail } from '../lib/mail-outbox';
import { createEmailVerification, insertPrincipal, principalByEmail, useEmailVerification } from './store/principals';

export const DEMO_EMAIL = 'demo@oap.local';

export async function signUp(env: OrchestratorBindings, email: string, password: string) {
  const principal = await insertPrincipal(env.DB, email, await hashPassword(password, pepperOf(env)));
  if (!principal) throw new ProblemError(409, 'invalid_request', 'An account with this email already exists; sign in instead.');
  await ledgerOf(env, principal.id).appendAuditEvent(principal.id, { actor: { type: 'principal', id: principal.id }, action: 'principal.create', target: principal.id, outcome: 'succeeded' });
  const token = randomToken();
  await createEmailVerification(env.DB, principal.id, token);
  const link = `${orchestratorConfig(env).PUBLIC_BASE_URL}/verify-email?token=${token}`;
  const mail = confirmationMail(link);
  await queueMail(env.DB, email, `${mail.subject} for ${orchestratorConfig(env).ORCHESTRATOR_NAME}`, mail.body);
  return { id: principal.id, email: principal.email };
}

export async function confirmEmail(env: OrchestratorBindings, token: string) {
  const principalId = await useEmailVerification(env.DB, token);
  if (!principalId) throw new ProblemError(404, 'not_found', 'This confirmation link is unknown, used or expired.');
  await ledgerOf(env, principalId).appendAuditEvent(principalId, { actor: { type: 'principal', id: principalId }, action: 'principal.confirm_email', target: principalId, outcome: 'succeeded' });
  return principalId;
}

let seeded = false;

/** Local development only (DEV_SEED in .dev.vars): the verified demo principal whose password `npm start` prints. */
export async function seedDemoPrincipal(env: OrchestratorBindings): Promise<void> {
  if (seeded || !orchestratorConfig(env).DEV_SEED || !env.DEMO_PASSWORD) return;
  if (!(await principalByEmail(env.DB, DEMO_EMAIL))) {
    const principal = await insertPrincipal(env.DB, DEMO_EMAIL, await hashPassword(env.DEMO_PASSWORD, pepperOf(env)), true);
    if (principal) {
      await ledgerOf(env, principal.id).appendAuditEvent(principal.id, { actor: { type: 'system', id: 'dev-seed' }, action: 'principal.create', target: principal.id, outcome: 'succeeded', reason: 'dev_seed' });
    }
  }
  seeded = true;
}
