// Charge authorization at the orchestrator (PROTOCOL.md §3.1 step 3): the
// checks of the mandate and of every limit, in order, and the hold, in one
// synchronous transaction of the principal's ledger. Nothing another request
// does can slip between a check and the hold it guards.
import { decodeJwt } from 'jose';
import { evaluateForProvider } from '../../workers/lib/mandate-constraints';
import type { Money } from '../../workers/lib/schemas/money';
import { iso, refuse, type LedgerTx } from './context';
import { getAgent, getMandate } from './mandates';
import { consumeNonce } from './nonces';
import {
  authorizedSince,
  billingPeriod,
  checkLimits,
  getHold,
  holdByIdempotencyKey,
  insertHold,
  ownLimit,
  queueWebhook,
  raiseBudgetAlerts,
  type Decline,
  type Hold,
} from './spend';

/** A hold the provider does not capture in this time is voided by the alarm. */
export const ORCHESTRATOR_HOLD_TTL_MS = 10 * 60 * 1000;
/** §3.3: the orchestrator's own ceiling on charges per principal per hour. */
export const CHARGES_PER_HOUR = 100;

export type ChargeRequest = {
  charge_id: string;
  provider: string;
  provider_jti: string;
  provider_jti_expires_ms: number;
  mandate_id: string;
  agent_id: string;
  service: string;
  plan: string;
  amount: Money;
  description: string;
  resource_ref: string | null;
  idempotency_key: string;
  token_jti: string;
  /** JSON: what the decision rests on: the agent's signed request and how it was verified. */
  evidence: string;
  /** A recurring plan's renewal: the charge it renews. A declined renewal is told to the human. */
  renewal_of?: string | null;
  /** The provider's audit event for this charge: the two trails cross-reference each other (§4 related). */
  provider_event_id?: string | null;
};

/** The hold (without its evidence, which stays in the ledger) and what the decision checked. */
export type Authorized = {
  ok: true;
  hold: Hold;
  replayed: boolean;
  decision: { mandate_status: string; constraint_results: { type: string; pass: boolean }[] };
  audit_event_id: string | null;
};

/** Decoded constraints by mandate JWS: a signed mandate never changes, so every charge under it decodes it once. */
const decodedConstraints = new Map<string, unknown>();

function signedConstraints(mandateJws: string): unknown {
  let constraints = decodedConstraints.get(mandateJws);
  if (constraints === undefined) {
    constraints = decodeJwt(mandateJws).constraints ?? null;
    if (decodedConstraints.size >= 256) decodedConstraints.delete(decodedConstraints.keys().next().value!);
    decodedConstraints.set(mandateJws, constraints);
  }
  return constraints ?? undefined;
}

export function authorizeCharge(tx: LedgerTx, request: ChargeRequest): Authorized | Decline {
  const provider = { type: 'provider' as const, id: request.provider };
  // The provider's request JWT is single use; its jti is remembered here, with the decision.
  if (!consumeNonce(tx, `provider:${request.provider}:${request.provider_jti}`, request.provider_jti_expires_ms + 60_000)) {
    return { ...refuse('replayed', 'This provider request token was already used.') };
  }
  const previous = holdByIdempotencyKey(tx.sql, request.provider, request.idempotency_key);
  if (previous) {
    // A retry is the same charge; the same key for another one is the provider's mistake, and changes nothing.
    const same =
      previous.mandate_id === request.mandate_id &&
      previous.agent_id === request.agent_id &&
      previous.service === request.service &&
      previous.plan === request.plan &&
      previous.amount === request.amount.amount &&
      previous.currency === request.amount.currency &&
      previous.resource_ref === request.resource_ref;
    if (!same) return { ...refuse('idempotency_key_reused', 'This idempotency_key was used for another charge.') };
    const evidence = previous.evidence ? (JSON.parse(previous.evidence) as { mandate_status_at_decision?: string; constraint_results?: { type: string; pass: boolean }[] }) : {};
    return {
      ok: true,
      hold: { ...previous, evidence: null },
      replayed: true,
      decision: { mandate_status: evidence.mandate_status_at_decision ?? 'active', constraint_results: evidence.constraint_results ?? [] },
      audit_event_id: null,
    };
  }

  const results: { type: string; pass: boolean }[] = [];
  const decline = (code: string, detail: string, extra: Partial<Decline> = {}): Decline => {
    if (request.renewal_of) {
      // §3.2: a renewal that does not fit suspends the resource instead of overspending, and the human hears of it.
      const data = { provider: request.provider, service: request.service, plan: request.plan, resource_ref: request.resource_ref, renewal_of: request.renewal_of, code, amount: request.amount };
      const id = `ntf_${request.charge_id.slice(4)}`;
      tx.sql.exec('INSERT OR IGNORE INTO notifications (id, type, created, data) VALUES (?, ?, ?, ?)', id, 'renewal.declined', iso(tx.now), JSON.stringify(data));
      queueWebhook(tx, { id, type: 'renewal.declined', created: iso(tx.now), data });
    }
    tx.audit({
      actor: provider,
      action: 'charge.authorize',
      mandate_id: request.mandate_id,
      target: request.charge_id,
      outcome: 'refused',
      reason: code,
      amount: request.amount,
      related: [request.agent_id, `${request.service}/${request.plan}`, ...(request.provider_event_id ? [request.provider_event_id] : [])],
    });
    return { ok: false, code, detail, ...extra };
  };

  const mandate = getMandate(tx.sql, request.mandate_id, tx.now);
  const agent = getAgent(tx.sql, request.agent_id);
  const active = !!mandate && mandate.agent_id === request.agent_id && mandate.status === 'active' && !!agent && agent.status === 'active' && !!mandate.approved;
  results.push({ type: 'mandate_active', pass: active });
  if (!active) return decline('mandate_inactive', `The mandate is ${mandate?.status ?? 'unknown'}${agent?.status === 'revoked' ? ' and the agent is revoked' : ''}.`);

  const verdict = evaluateForProvider(mandate.mandate_jws ? signedConstraints(mandate.mandate_jws) : undefined, request.provider, tx.now);
  const inScope = verdict.ok && verdict.services.includes(request.service);
  results.push({ type: 'provider_services', pass: inScope });
  if (!inScope) return decline('out_of_scope', verdict.ok ? `${request.service} is not among the services this mandate allows at ${request.provider}.` : verdict.reason);

  const perCharge = verdict.ok ? verdict.max_per_charge : null;
  const fitsPerCharge = !perCharge || (perCharge.currency === request.amount.currency && request.amount.amount <= perCharge.amount);
  results.push({ type: 'max_per_charge', pass: fitsPerCharge });
  if (!fitsPerCharge) {
    return decline('spend_limit_exceeded', `This charge exceeds the mandate's limit of ${perCharge!.amount} ${perCharge!.currency} per charge.`, {
      limit: perCharge!,
      spent: { amount: 0, currency: perCharge!.currency },
      requested: request.amount,
      scope: 'max_per_charge',
    });
  }

  const period = billingPeriod(tx.now);
  const root = mandate.root;
  const mandateLimit = { amount: mandate.approved!.spend_limit.amount, currency: mandate.approved!.spend_limit.currency };
  const principalLimit = ownLimit(tx.sql);
  const limitChecks = [
    { scope: `mandate:${root}`, limit: mandateLimit } as { scope: string; limit: typeof mandateLimit; spent?: number },
    { scope: 'principal', limit: principalLimit } as { scope: string; limit: typeof principalLimit; spent?: number },
  ];
  const over = checkLimits(tx.sql, period, request.amount, limitChecks);
  results.push({ type: 'mandate_spend_limit', pass: !over || over.scope !== `mandate:${root}` });
  if (over) {
    if (over.scope === 'principal') results.push({ type: 'monthly_limit', pass: false });
    return decline(over.code, over.detail, over);
  }
  results.push({ type: 'monthly_limit', pass: true });

  const recent = authorizedSince(tx.sql, tx.now - 60 * 60 * 1000);
  results.push({ type: 'velocity', pass: recent < CHARGES_PER_HOUR });
  if (recent >= CHARGES_PER_HOUR) return decline('velocity_limited', `At most ${CHARGES_PER_HOUR} charges an hour.`);

  const before = { mandate: limitChecks[0]!.spent!, principal: limitChecks[1]!.spent! };
  const hold = insertHold(tx, {
    id: request.charge_id,
    mandate_id: request.mandate_id,
    mandate_root: root,
    provider: request.provider,
    service: request.service,
    plan: request.plan,
    agent_id: request.agent_id,
    amount: request.amount,
    idempotency_key: request.idempotency_key,
    resource_ref: request.resource_ref,
    description: request.description,
    evidence: JSON.stringify({
      ...(JSON.parse(request.evidence) as object),
      token_jti: request.token_jti,
      constraint_results: results,
      mandate_status_at_decision: mandate.status,
      decided_at: iso(tx.now),
    }),
    ttl_ms: ORCHESTRATOR_HOLD_TTL_MS,
    scopes: ['principal', `mandate:${root}`, `provider:${request.provider}`],
  });
  const authorizedEvent = tx.audit({
    actor: provider,
    action: 'charge.authorize',
    mandate_id: request.mandate_id,
    target: request.charge_id,
    outcome: 'succeeded',
    amount: request.amount,
    related: [request.agent_id, `${request.service}/${request.plan}`, ...(request.provider_event_id ? [request.provider_event_id] : [])],
  });
  raiseBudgetAlerts(tx, period, 'principal', principalLimit, before.principal, before.principal + request.amount.amount);
  raiseBudgetAlerts(tx, period, `mandate:${root}`, mandateLimit, before.mandate, before.mandate + request.amount.amount);
  return { ok: true, hold: { ...hold, evidence: null }, replayed: false, decision: { mandate_status: mandate.status, constraint_results: results }, audit_event_id: authorizedEvent.id };
}

export { getHold };
