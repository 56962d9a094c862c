// Account linking (PROTOCOL.md §2.3): an orchestrator's principal whose
// verified email matches an existing account here is attached only when the
// account's human signs in here and confirms. Never from an agent credential.
import { ProblemError } from '../lib/problem';
import { ledgerOf, type ProviderBindings } from './env';
import { accountById, confirmLinkRequest, declineLinkRequest, linkRequest, type LinkRequestRow } from './store/accounts';

export type LinkView = { request: LinkRequestRow; status: 'pending' | 'linked' | 'declined' | 'expired' };

/** The request, if the signed-in human owns the account it would link. */
export async function linkRequestFor(env: ProviderBindings, accountId: string, linkId: string): Promise<LinkView> {
  const request = await linkRequest(env.DB, linkId);
  if (!request || request.account_id !== accountId) throw new ProblemError(404, 'not_found', 'No such link request for this account.');
  const status = request.status === 'pending' && request.expires_at <= Date.now() ? 'expired' : request.status;
  return { request, status };
}

export async function confirmLink(env: ProviderBindings, accountId: string, linkId: string): Promise<LinkView> {
  const { request, status } = await linkRequestFor(env, accountId, linkId);
  const account = await accountById(env.DB, accountId);
  if (!account || account.email_verified !== 1) throw new ProblemError(403, 'unauthorized', 'Only an account with a verified email can be linked.');
  if (status !== 'pending' || !(await confirmLinkRequest(env.DB, request))) throw new ProblemError(409, 'invalid_request', `This link request is ${status}.`);
  await ledgerOf(env, accountId).appendAuditEvent(accountId, {
    actor: { type: 'principal', id: accountId },
    action: 'account.link',
    target: request.iss,
    mandate_id: request.mandate_id,
    outcome: 'succeeded',
    related: [request.id, request.agent_id],
  });
  return linkRequestFor(env, accountId, linkId);
}

export async function declineLink(env: ProviderBindings, accountId: string, linkId: string): Promise<LinkView> {
  const { status } = await linkRequestFor(env, accountId, linkId);
  if (status !== 'pending' || !(await declineLinkRequest(env.DB, linkId))) throw new ProblemError(409, 'invalid_request', `This link request is ${status}.`);
  await ledgerOf(env, accountId).appendAuditEvent(accountId, { actor: { type: 'principal', id: accountId }, action: 'account.link', target: linkId, outcome: 'refused', reason: 'declined_by_owner' });
  return linkRequestFor(env, accountId, linkId);
}
