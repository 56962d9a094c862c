// Security Event Tokens from trusted orchestrators (PROTOCOL.md §2.5, RFC 8417,
// pushed per RFC 8935): revocations take effect for every token at once; a
// redelivered event is acknowledged again and applied once.
import { jwtVerify, type JWTPayload } from 'jose';
import { ORCHESTRATOR_ALGS } from '../lib/jws';
import { issuerKeys } from '../lib/jwks-cache';
import { ProblemError, refusalProblem } from '../lib/problem';
import { claimedIssuer } from '../lib/request-tokens';
import { ledgerOf, providerConfig, SYSTEM_CHAIN, type ProviderBindings } from './env';
import { addRevocation, firstReceipt, linkedAccount } from './store/accounts';

export const EVENT_URI_PREFIX = 'https://oap.dev/events/';
const KNOWN_EVENTS = ['mandate.revoked', 'agent.revoked', 'charge.refunded'] as const;
type KnownEvent = (typeof KNOWN_EVENTS)[number];

const refused = (detail: string) => new ProblemError(400, 'invalid_request', detail);

export async function receiveSecurityEvent(env: ProviderBindings, set: string): Promise<{ applied: KnownEvent[]; duplicate: boolean }> {
  const config = providerConfig(env);
  let iss: string;
  try {
    iss = String(claimedIssuer(set, 'secevent+jwt', ORCHESTRATOR_ALGS) ?? '');
  } catch (error) {
    throw refused(`The security event token is refused: ${(error as Error).message}.`);
  }
  if (!config.TRUSTED_ORCHESTRATORS.includes(iss)) throw new ProblemError(403, 'unauthorized', 'Events are accepted only from trusted orchestrators.');
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(set, issuerKeys(iss), { typ: 'secevent+jwt', algorithms: ORCHESTRATOR_ALGS, issuer: iss, audience: config.PUBLIC_BASE_URL, requiredClaims: ['jti', 'iat'] }));
  } catch {
    throw new ProblemError(401, 'invalid_signature', 'The security event token does not verify.');
  }
  const events = parseEvents(payload.events);
  const account = typeof payload.sub === 'string' ? await linkedAccount(env.DB, iss, payload.sub) : null;
  // Every event is applied before the token counts as received. Each is idempotent, so a crash in between only
  // repeats it; one that cannot be applied refuses the token, which the orchestrator sends again, never lost.
  for (const { type, data } of events) {
    if (type === 'mandate.revoked') await addRevocation(env.DB, iss, 'mandate', data.mandate_id as string);
    if (type === 'agent.revoked') await addRevocation(env.DB, iss, 'agent', data.agent_id as string);
    // §2.5: a refund decided at the orchestrator (a dispute) is a reversal here too.
    if (type === 'charge.refunded') {
      if (!account) throw new ProblemError(404, 'not_found', 'The refund’s subject is not linked to an account here.');
      const refunded = await ledgerOf(env, account.account_id).refundCharge(account.account_id, data.charge_id as string, `refunded_by_orchestrator:${String(data.verdict ?? '')}`);
      if (!refunded.ok) throw refusalProblem(refunded, refunded.code === 'not_found' ? 404 : 409);
    }
  }
  if (!(await firstReceipt(env.DB, iss, payload.jti!))) return { applied: [], duplicate: true };

  const chain = account?.account_id ?? SYSTEM_CHAIN;
  for (const { type, data } of events) {
    await ledgerOf(env, chain).appendAuditEvent(chain, {
      actor: { type: 'orchestrator', id: iss },
      action: `event.${type}`,
      mandate_id: typeof data.mandate_id === 'string' ? data.mandate_id : null,
      target: String(data.mandate_id ?? data.agent_id ?? data.charge_id ?? ''),
      outcome: 'succeeded',
      related: [payload.jti!],
    });
  }
  return { applied: events.map((e) => e.type), duplicate: false };
}

/** What each event must name: the thing it is about. */
const SUBJECT_OF: Record<KnownEvent, string> = { 'mandate.revoked': 'mandate_id', 'agent.revoked': 'agent_id', 'charge.refunded': 'charge_id' };

/**
 * The SET's events, each a known type naming its subject; anything else refuses
 * the whole token, so that an event is never acknowledged without being applied.
 * PROTOCOL names the types bare, RFC 8417 as URIs: both forms are taken.
 */
function parseEvents(events: unknown): { type: KnownEvent; data: Record<string, unknown> }[] {
  if (typeof events !== 'object' || events === null || Array.isArray(events)) throw refused('The token carries no events object.');
  const parsed = Object.entries(events).map(([key, data]) => {
    const type = (key.startsWith(EVENT_URI_PREFIX) ? key.slice(EVENT_URI_PREFIX.length) : key) as KnownEvent;
    if (!KNOWN_EVENTS.includes(type)) throw refused(`Unknown event: ${key}.`);
    const subject = SUBJECT_OF[type];
    if (typeof data !== 'object' || data === null || typeof (data as Record<string, unknown>)[subject] !== 'string' || !(data as Record<string, string>)[subject]) {
      throw refused(`The ${type} event must name its ${subject}.`);
    }
    return { type, data: data as Record<string, unknown> };
  });
  if (parsed.length === 0) throw refused('The token carries no events.');
  return parsed;
}
