// Security Event Tokens from trusted orchestrators (PROTOCOL.md §2.5, RFC 8417,
// pushed per RFC 8935): revocations take effect for every token at once; a
// redelivered event is acknowledged again and applied once.
import { decodeJwt, jwtVerify, type JWTPayload } from 'jose';
import { checkJwsHeader, ED25519_ALGS } from '../lib/jws';
import { issuerKeys } from '../lib/jwks-cache';
import { ProblemError } from '../lib/problem';
import { ledgerOf, providerConfig, SYSTEM_CHAIN, type ProviderBindings } from './env';
import { addRevocation, firstReceipt, linkedAccount } from './store/accounts';

export const EVENT_URI_PREFIX = 'https://oap.dev/events/';
const KNOWN_EVENTS = ['mandate.revoked', 'agent.revoked', 'charge.refunded'] as const;
type KnownEvent = (typeof KNOWN_EVENTS)[number];

const refused = (detail: string) => new ProblemError(400, 'invalid_request', detail);

export async function receiveSecurityEvent(env: ProviderBindings, set: string): Promise<{ applied: KnownEvent[]; duplicate: boolean }> {
  const config = providerConfig(env);
  let unverified: JWTPayload;
  try {
    const header = checkJwsHeader(set);
    if (header.typ !== 'secevent+jwt') throw new Error('typ must be secevent+jwt');
    unverified = decodeJwt(set);
  } catch (error) {
    throw refused(`The security event token is refused: ${(error as Error).message}.`);
  }
  const iss = String(unverified.iss ?? '');
  if (!config.TRUSTED_ORCHESTRATORS.includes(iss)) throw new ProblemError(403, 'unauthorized', 'Events are accepted only from trusted orchestrators.');
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(set, issuerKeys(iss), { typ: 'secevent+jwt', algorithms: ED25519_ALGS, issuer: iss, audience: config.PUBLIC_BASE_URL, requiredClaims: ['jti', 'iat'] }));
  } catch {
    throw new ProblemError(401, 'invalid_signature', 'The security event token does not verify.');
  }
  const events = (payload.events ?? {}) as Record<string, Record<string, unknown>>;
  const types = Object.keys(events).map((uri) => (uri.startsWith(EVENT_URI_PREFIX) ? uri.slice(EVENT_URI_PREFIX.length) : uri));
  const unknown = types.filter((t) => !KNOWN_EVENTS.includes(t as KnownEvent));
  if (types.length === 0 || unknown.length) throw refused(`Unknown or missing events: ${unknown.join(', ') || 'none'}.`);
  // Revocations first: they are idempotent, so a crash before the receipt is recorded only repeats them.
  for (const [uri, data] of Object.entries(events)) {
    const type = uri.slice(EVENT_URI_PREFIX.length) as KnownEvent;
    if (type === 'mandate.revoked' && typeof data.mandate_id === 'string') await addRevocation(env.DB, iss, 'mandate', data.mandate_id);
    if (type === 'agent.revoked' && typeof data.agent_id === 'string') await addRevocation(env.DB, iss, 'agent', data.agent_id);
  }
  if (!(await firstReceipt(env.DB, iss, payload.jti!))) return { applied: [], duplicate: true };

  const account = typeof payload.sub === 'string' ? await linkedAccount(env.DB, iss, payload.sub) : null;
  const chain = account?.account_id ?? SYSTEM_CHAIN;
  for (const [uri, data] of Object.entries(events)) {
    const type = uri.slice(EVENT_URI_PREFIX.length) as KnownEvent;
    // §2.5: a refund decided at the orchestrator (a dispute) is a reversal here too.
    if (type === 'charge.refunded' && account && typeof data.charge_id === 'string') {
      await ledgerOf(env, account.account_id).refundCharge(account.account_id, data.charge_id, `refunded_by_orchestrator:${String(data.verdict ?? '')}`);
    }
    await ledgerOf(env, chain).appendAuditEvent(chain, {
      actor: { type: 'orchestrator', id: iss },
      action: `event.${type}`,
      mandate_id: typeof data.mandate_id === 'string' ? data.mandate_id : null,
      target: String(data.mandate_id ?? data.agent_id ?? data.charge_id ?? ''),
      outcome: 'succeeded',
      related: [payload.jti!],
    });
  }
  return { applied: types as KnownEvent[], duplicate: false };
}
