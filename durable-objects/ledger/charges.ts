// Charge authorization at the orchestrator (PROTOCOL.md §3.1 step 3): the
// checks of the mandate and of every limit, in order, and the hold, in one
// synchronous transaction of the principal's ledger. Nothing another request
// does can slip between a check and the hold it guards.
import { decodeJwt } from 'jose';
import { evaluateForProvider } from '../../workers/lib/mandate-constraints';
import type { Money } from '../../workers/lib/schemas/money';
import { iso, refuse, type LedgerTx } from './context';
import type { MandateStatus } from '../../workers/lib/schemas/mandates';
import { effectiveStatus, mandateRoot, type MandateTerms } from './mandates';
import { consumeNonce } from './nonces';
import { RENEWAL_CLOCK_SKEW_MS, renewableFrom } from './renewal-periods';
import {
  evidenceOf,
  billingPeriod,
  DEFAULT_MONTHLY_LIMIT,
  exceededLimit,
  getHold,
  insertHold,
  notifyOnce,
  raiseBudgetAlerts,
  type Decline,
  type Hold,
  voidHold,
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
  /**
   * The single-use value of the agent's signature the charge rests on (none for a renewal, which rests on the
   * charge it renews): one signed request backs one charge, so it is used up when the hold is made.
   */
  agent_signature?: { nonce: string; expires_ms: number } | null;
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

/**
 * A bounded memo of what was decoded from a stored text. The texts are immutable
 * once a mandate is approved (its JWS, its approved terms), so every charge
 * under a mandate decodes them once; keyed by the text itself, a stale entry
 * cannot exist.
 */
function decodedOnce<T>(decode: (text: string) => T): (text: string) => T {
  const decoded = new Map<string, T>();
  return (text) => {
    if (decoded.has(text)) return decoded.get(text)!;
    const value = decode(text);
    if (decoded.size >= 256) decoded.delete(decoded.keys().next().value!);
    decoded.set(text, value);
    return value;
  };
}

const signedConstraints = decodedOnce((mandateJws) => decodeJwt(mandateJws).constraints ?? undefined);
const mandateTerms = decodedOnce((terms) => JSON.parse(terms) as MandateTerms);

type DecisionInputs = {
  previous_id: string | null;
  mandate_id: string | null;
  agent_id: string | null;
  status: MandateStatus | null;
  pending_until: number | null;
  requested: string | null;
  approved: string | null;
  mandate_jws: string | null;
  root: string | null;
  /** The status of the agent that asks (which must also be the mandate's). */
  agent_status: 'active' | 'revoked' | null;
  limit_amount: number | null;
  limit_currency: string | null;
  principal_spent: number;
  mandate_spent: number;
  recent: number;
  /** 1 when the agent signature's single-use value is remembered: the signed request already backs a charge. */
  signature_seen: 0 | 1;
};

/**
 * Everything the decision reads, in one statement: the charge this may be a
 * retry of, the mandate, the requesting agent, the principal's own limit, what the
 * principal and the mandate have spent this period, the charges of the
 * last hour (velocity), and whether the agent's signed request backs a charge already. A charge is the ledger's hottest path, and each
 * statement has a fixed cost.
 */
function decisionInputs(tx: LedgerTx, request: ChargeRequest, period: string): DecisionInputs {
  return tx.sql
    .exec<DecisionInputs>(
      `SELECT
         (SELECT id FROM holds WHERE provider = ?1 AND idempotency_key = ?2) AS previous_id,
         m.id AS mandate_id, m.agent_id, m.status, m.pending_until, m.requested, m.approved, m.mandate_jws, COALESCE(m.root, m.id) AS root,
         a.status AS agent_status,
         l.amount AS limit_amount, l.currency AS limit_currency,
         COALESCE((SELECT amount FROM spend_totals WHERE period = ?4 AND scope = 'principal'), 0) AS principal_spent,
         COALESCE((SELECT amount FROM spend_totals WHERE period = ?4 AND scope = 'mandate:' || COALESCE(m.root, m.id)), 0) AS mandate_spent,
         (SELECT COUNT(*) FROM holds WHERE status IN ('pending', 'captured') AND created >= ?5) AS recent,
         EXISTS (SELECT 1 FROM seen_nonces WHERE nonce = ?7 AND expires_at > ?8) AS signature_seen
       FROM (SELECT ?3 AS id) wanted
       LEFT JOIN mandates m ON m.id = wanted.id
       LEFT JOIN agents a ON a.id = ?6
       LEFT JOIN limits l ON l.scope = 'principal'`,
      request.provider,
      request.idempotency_key,
      request.mandate_id,
      period,
      tx.now - 60 * 60 * 1000,
      request.agent_id,
      request.agent_signature?.nonce ?? null,
      tx.now,
    )
    .one();
}

/**
 * What a renewal must hold before it is decided like any other charge, and the mandate it is decided under. That is
 * the current link of the chain the renewed charge was made under (a human who re-approves a mandate, a successor
 * superseding it, keeps what it pays for; revoking it stops it), whichever link the provider names, and it must name
 * one of that chain. It renews the resource's latest charge, not one a later captured charge (a plan change, another
 * renewal) replaced; no sooner than that charge's period ends (renewal-periods.ts); and once: another renewal of the
 * same charge already captured (or refunded) refuses it, and one still pending is a try the provider gave up on (its
 * answer lost, or the provider restarted while it asked), voided in favour of this one, after every check. A request
 * under a key already used is left to the replay. It reads the resource's holds through no index of their own (one
 * more b-tree on every charge's write would cost the hot path): renewals only, about once a period per resource.
 */
function checkRenewal(tx: LedgerTx, request: ChargeRequest, actor: { type: 'provider'; id: string }): Decline | { ok: true; mandate_id: string } {
  // The orchestrator found the charge and held the renewal to it (captured, same resource, plan and price) before asking.
  const renewed = getHold(tx.sql, request.renewal_of!)!;
  const chain = renewed.mandate_root ?? renewed.mandate_id;
  if (mandateRoot(tx.sql, request.mandate_id) !== chain) return refuse('invalid_signature', `${renewed.id} was made under another mandate than ${request.mandate_id}.`);
  // A retry is replayed as it was decided, under the link it was decided under, even if the chain moved on since.
  const tried = tx.sql.exec<{ mandate_id: string }>('SELECT mandate_id FROM holds WHERE provider = ? AND idempotency_key = ?', request.provider, request.idempotency_key).toArray()[0];
  if (tried) return { ok: true, mandate_id: tried.mandate_id };
  const current = tx.sql
    .exec<{ id: string }>(`SELECT id FROM mandates WHERE COALESCE(root, id) = ? AND approved IS NOT NULL AND status != 'superseded' ORDER BY created DESC LIMIT 1`, chain)
    .toArray()[0];
  const decided = { ok: true as const, mandate_id: current?.id ?? request.mandate_id };
  // The resource's captured charges (a renewal names its resource: the request schema requires it).
  const onResource = `provider = ? AND resource_ref = ? AND status IN ('captured', 'refunded')`;
  const replacing = tx.sql
    .exec<{ id: string }>(`SELECT id FROM holds WHERE ${onResource} AND created > ? AND json_extract(evidence, '$.renewal_of') IS NOT ? LIMIT 1`, request.provider, request.resource_ref, renewed.created, renewed.id)
    .toArray()[0];
  if (replacing) return refuse('invalid_signature', `${renewed.id} was replaced on ${request.resource_ref} by ${replacing.id}: a resource renews its latest charge.`);
  const previousOnResource = (charge: Hold) =>
    tx.sql.exec<Hold>(`SELECT * FROM holds WHERE ${onResource} AND created < ? ORDER BY created DESC LIMIT 1`, request.provider, request.resource_ref, charge.created).toArray()[0] ?? null;
  // As the plan was billed when the renewed charge was made (carried in this renewal's evidence); a plan the
  // catalog does not say the billing of is held to the shortest period there is.
  const billing = evidenceOf({ evidence: request.evidence }).billing;
  const due = renewableFrom(renewed, billing === 'year' ? 'year' : 'month', previousOnResource);
  if (tx.now < due - RENEWAL_CLOCK_SKEW_MS) {
    return { ...refuse('renewal_not_due', `${renewed.id} paid for a period that ends ${iso(due)}; it renews then, not before.`), renews_at: due };
  }
  const earlier = tx.sql
    .exec<{ id: string; status: string }>(
      `SELECT id, status FROM holds WHERE provider = ? AND resource_ref IS ? AND status != 'voided' AND created > ? AND json_extract(evidence, '$.renewal_of') = ?`,
      request.provider,
      request.resource_ref,
      // A renewal is made after the charge it renews.
      renewed.created,
      renewed.id,
    )
    .toArray();
  if (earlier.some((hold) => hold.status !== 'pending')) return refuse('invalid_signature', `${renewed.id} was renewed already: a charge is renewed once.`);
  for (const hold of earlier) voidHold(tx, hold.id, actor, 'superseded_by_a_later_try');
  return decided;
}

export function authorizeCharge(tx: LedgerTx, asked: ChargeRequest): Authorized | Decline {
  let request = asked;
  const provider = { type: 'provider' as const, id: request.provider };
  /** A refusal before any check of the mandate: said in the trail like every other (§4). */
  const refused = (code: string, detail: string, extra: Partial<Decline> = {}): Decline => {
    tx.audit({ actor: provider, action: 'charge.authorize', mandate_id: request.mandate_id, target: request.charge_id, outcome: 'refused', reason: code, amount: request.amount, related: [request.agent_id, `idempotency_key:${request.idempotency_key}`] });
    return { ...refuse(code, detail), ...extra };
  };
  // The provider's request JWT is single use; its jti is remembered here, with the decision.
  if (!consumeNonce(tx, `provider:${request.provider}:${request.provider_jti}`, request.provider_jti_expires_ms + 60_000)) {
    return refused('replayed', 'This provider request token was already used.');
  }
  if (request.renewal_of) {
    const renewal = checkRenewal(tx, request, provider);
    if (!renewal.ok) return refused(renewal.code, renewal.detail, renewal);
    request = { ...request, mandate_id: renewal.mandate_id };
  }
  const period = billingPeriod(tx.now);
  // Read after any earlier try was voided, so that the limits no longer count it.
  const inputs = decisionInputs(tx, request, period);
  const previous = inputs.previous_id === null ? null : getHold(tx.sql, inputs.previous_id);
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
    if (!same) return refused('idempotency_key_reused', 'This idempotency_key was used for another charge.');
    const evidence = evidenceOf(previous);
    return {
      ok: true,
      hold: { ...previous, evidence: null },
      replayed: true,
      decision: { mandate_status: evidence.mandate_status_at_decision ?? 'active', constraint_results: evidence.constraint_results ?? [] },
      audit_event_id: null,
    };
  }

  // Not a retry: a new charge on a signed request that already backs one is a replay (checked here, used up with the hold).
  const signature = request.agent_signature ?? null;
  if (signature && inputs.signature_seen) return refused('replayed', 'The agent’s signed request already backs another charge.');

  const results: { type: string; pass: boolean }[] = [];
  const decline = (code: string, detail: string, extra: Partial<Decline> = {}): Decline => {
    if (request.renewal_of) {
      // §3.2: a renewal that does not fit suspends the resource instead of overspending, and the human hears of it,
      // once for the charge it renews and the reason: the provider tries the renewal again while it is suspended
      // (each try audited), and a new reason (a velocity limit, then the monthly one) is news.
      const data = { provider: request.provider, service: request.service, plan: request.plan, resource_ref: request.resource_ref, renewal_of: request.renewal_of, code, amount: request.amount };
      notifyOnce(tx, `ntf_renewal_${code}_${request.renewal_of.slice(4)}`, 'renewal.declined', data);
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
    // The mandate it was decided under (a renewal's may be a successor of the one the provider named): where the human steps up.
    return { ok: false, code, detail, mandate_id: request.mandate_id, ...extra };
  };

  const approved = inputs.approved === null ? null : mandateTerms(inputs.approved);
  const mandateStatus =
    inputs.mandate_id === null
      ? null
      : effectiveStatus({ status: inputs.status!, pending_until: inputs.pending_until!, expires_at: (approved ?? mandateTerms(inputs.requested!)).expires_at }, tx.now);
  const active = mandateStatus === 'active' && inputs.agent_id === request.agent_id && inputs.agent_status === 'active' && approved !== null;
  results.push({ type: 'mandate_active', pass: active });
  if (!active) return decline('mandate_inactive', `The mandate is ${mandateStatus ?? 'unknown'}${inputs.agent_status === 'revoked' ? ' and the agent is revoked' : ''}.`);

  const verdict = evaluateForProvider(inputs.mandate_jws ? signedConstraints(inputs.mandate_jws) : undefined, request.provider, tx.now);
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

  const root = inputs.root!;
  const mandateLimit = { amount: approved.spend_limit.amount, currency: approved.spend_limit.currency };
  const principalLimit = inputs.limit_amount === null ? DEFAULT_MONTHLY_LIMIT : { amount: inputs.limit_amount, currency: inputs.limit_currency! };
  const before = { mandate: inputs.mandate_spent, principal: inputs.principal_spent };
  const over = exceededLimit(request.amount, [
    { scope: `mandate:${root}`, limit: mandateLimit, spent: before.mandate },
    { scope: 'principal', limit: principalLimit, spent: before.principal },
  ]);
  results.push({ type: 'mandate_spend_limit', pass: !over || over.scope !== `mandate:${root}` });
  if (over) {
    if (over.scope === 'principal') results.push({ type: 'monthly_limit', pass: false });
    return decline(over.code, over.detail, over);
  }
  results.push({ type: 'monthly_limit', pass: true });

  results.push({ type: 'velocity', pass: inputs.recent < CHARGES_PER_HOUR });
  if (inputs.recent >= CHARGES_PER_HOUR) return decline('velocity_limited', `At most ${CHARGES_PER_HOUR} charges an hour.`);

  // Used up only now, with the hold: a declined charge leaves the agent's signature as it was.
  if (signature) consumeNonce(tx, signature.nonce, signature.expires_ms);
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
      mandate_status_at_decision: mandateStatus,
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
  return { ok: true, hold: { ...hold, evidence: null }, replayed: false, decision: { mandate_status: mandateStatus, constraint_results: results }, audit_event_id: authorizedEvent.id };
}

export { getHold };
