// The dispute adjudicator (PROTOCOL.md §5): did the agent act within the scope
// the human authorized? Decided from an evidence bundle alone: signatures are
// checked against the public keys the bundle carries (and, when a reader pins
// the parties' keys, those must be among them), times are the charge's own,
// nothing is fetched. Versioned: the same bundle always yields the same
// verdict, so anyone can rerun it (agent/verify-evidence.ts).
import { calculateJwkThumbprint, decodeJwt, importJWK, jwtVerify, type JSONWebKeySet, type JWK, type JWTVerifyOptions } from 'jose';
import type { z } from '@hono/zod-openapi';
import type { SignedHead } from './audit-heads';
import { canonicalJson, hashMatches, sha256Hex, type AuditEvent } from './audit';
import { verifyRequestSignature } from './http-signatures';
import { signedCallMismatch, signedObject, type SignedPrice } from './signed-call';
import { ED25519_ALGS } from './jws';
import { evaluateForProvider, type MandateConstraint } from './mandate-constraints';

// 2: the signed terms are held to what the human was shown (an orchestrator that
// re-signs broader terms under the same display_hash is caught).
// 3: the orchestrator's trail is held to a chain proof (format 2); the keys relied on are named,
// and checked against keys a reader pins.
// 4: each provider event is held to a head the provider signed at it; without one the provider's
// trail is missing, which corroborates nothing and decides nothing alone.
// 5: the agent's signed request is held to the price it named: a creation charged exactly its
// expected_price (the provider's published price holds when it named none), a plan change, which
// must name the new plan's full price, charged no more than that.
// 6: the agent's signed request is held to where it went, as the orchestrator already was: a creation
// is a POST to the charged provider's resources naming the charged service, a plan change a PATCH of
// the charged resource. A request signed for another provider, or a DELETE, backs no charge. A bundle
// naming no issuer for the provider (one the orchestrator no longer knows) is the orchestrator's
// evidence falling short, not the provider's fault: insufficient_evidence. The provider's trail may
// show a plan change (resource.update) paid by the charge, not only a provision.
// 7: the signed request's Content-Digest is read as RFC 9530 writes it, a dictionary whose one sha-256
// member must be the body's (digests by other algorithms beside it, any spacing); it had to be exactly
// `sha-256=:…:`, so a request another client digested that way was refused as unsigned.
export const ADJUDICATOR_VERSION = 'oap-adjudicator/7';
/**
 * 2: `audit.orchestrator.events` are runs of the principal's chain, each from an event about the
 * charge through the first head the orchestrator signed after it (`heads`). Format 1 carried only the
 * charge's own events, each checked alone: it is still read, but nothing in it proves the events
 * unedited (its format field is not signed, so anyone can relabel a bundle), and its trail is missing.
 */
export const EVIDENCE_FORMAT = 'oap-evidence/2';
export const EVIDENCE_FORMATS = ['oap-evidence/1', EVIDENCE_FORMAT] as const;
export type EvidenceFormat = (typeof EVIDENCE_FORMATS)[number];

export type EvidenceBundle = {
  format: EvidenceFormat;
  charge: {
    charge_id: string;
    status: string;
    amount: number;
    currency: string;
    provider: string;
    service: string;
    plan: string;
    mandate_id: string;
    agent_id: string;
    authorized_at: string;
    receipt: string | null;
    /** The resource a plan change is charged for (absent from bundles gathered before oap-adjudicator/6). */
    resource_ref?: string | null;
  };
  decision: { mandate_status_at_decision: string; constraint_results: { type: string; pass: boolean }[]; token_jti: string | null } | null;
  agent_request: { method: string; target_uri: string; body: string; content_digest: string; signature_input: string; signature: string } | null;
  agent: { agent_id: string; public_jwk: JWK; key_thumbprint: string; revoked_at: string | null };
  mandate: { mandate_id: string; mandate_jws: string | null; display_document: string | null; revoked_at: string | null };
  orchestrator: { issuer: string; jwks: JSONWebKeySet };
  /** `url`: where the provider serves its API, which the agent's signed request names (absent before oap-adjudicator/6: its issuer). */
  provider: { id: string; issuer: string; url?: string; jwks: JSONWebKeySet };
  audit: {
    /**
     * Format 2: `events` are runs of the principal's chain, each from an event about the charge through
     * the first head the orchestrator signed after it, listed in `heads` (`signed_head` is the last).
     */
    orchestrator: { events: AuditEvent[]; signed_head: SignedHead | null; heads?: SignedHead[] };
    /** The provider's side, when it could be obtained: corroborates the receipt, decides nothing alone. */
    /** `heads` (format 2): for each event, a head the provider signed at its seq, which proves it shown alone. */
    provider: { events: AuditEvent[]; signed_head: SignedHead | null; heads?: SignedHead[] } | null;
  };
};


export type Finding = { check: string; result: 'pass' | 'fail' | 'missing'; evidence: string };
export type Verdict = 'within_scope' | 'outside_scope' | 'insufficient_evidence';
export type Party = 'orchestrator' | 'provider';
/** Keys a reader obtained elsewhere (the parties' published JWKS): the bundle's own keys must be among them. */
export type PinnedKeys = Partial<Record<Party, JSONWebKeySet>>;
/** A key a signature in the bundle was verified with, by RFC 7638 thumbprint; `pinned` is null when nothing was pinned for its party. */
export type ReliedKey = { party: Party | 'agent'; thumbprint: string; used_for: string[]; pinned: boolean | null };
export type Adjudication = { adjudicator: string; format: string; verdict: Verdict; failing_party: Party | null; findings: Finding[]; keys: ReliedKey[] };

/** Which party answers for a failed check: the one whose duty it was to stop the charge. */
const PARTY: Record<string, 'orchestrator' | 'provider'> = {
  mandate_signed: 'orchestrator',
  mandate_active: 'orchestrator',
  provider_and_service_in_scope: 'orchestrator',
  amount_within_limits: 'orchestrator',
  agent_signed_request: 'orchestrator',
  human_approved_display: 'orchestrator',
  provider_delivered: 'provider',
  provider_checks: 'provider',
  audit_trail: 'orchestrator',
  provider_trail: 'provider',
  orchestrator_keys_pinned: 'orchestrator',
  provider_keys_pinned: 'provider',
};

/**
 * Verifies compact JWTs with one party's keys from the bundle, and remembers which key each
 * signature rested on (RFC 7638 thumbprint), so a reader sees, and may pin, what it trusted.
 */
function keyRecorder(bundle: EvidenceBundle) {
  const relied: ReliedKey[] = [];
  const note = (party: ReliedKey['party'], thumbprint: string, use: string) => {
    const known = relied.find((k) => k.party === party && k.thumbprint === thumbprint);
    if (known) known.used_for.push(use);
    else relied.push({ party, thumbprint, used_for: [use], pinned: null });
  };
  const verify = async (party: Party, use: string, jws: string, options: JWTVerifyOptions) => {
    const keys = (bundle[party].jwks?.keys ?? []) as JWK[];
    let used: JWK | undefined;
    // RFC 7515 §4.1.4: the kid selects the key; without one, only a set of one key is unambiguous.
    const result = await jwtVerify(
      jws,
      async (header) => {
        const candidates = keys.filter((k) => k.kty === 'OKP' && (k.use === undefined || k.use === 'sig') && (header.kid === undefined || k.kid === header.kid));
        if (candidates.length !== 1) throw new Error(candidates.length === 0 ? `no key${header.kid ? ` ${header.kid}` : ''} in the ${party}'s JWKS` : `several keys of the ${party}'s JWKS match`);
        used = candidates[0]!;
        return importJWK(used, header.alg);
      },
      options,
    );
    note(party, await calculateJwkThumbprint(used!, 'sha256'), use);
    return result;
  };
  /** A party's signed audit head (§4), verified with that party's key. */
  const verifyHead = (party: Party, jws: string) =>
    verify(party, party === 'provider' ? 'provider audit head' : 'audit head', jws, { typ: 'oap-audit-head+jwt', algorithms: ED25519_ALGS, issuer: bundle[party].issuer });
  return { relied, note, verify, verifyHead };
}

/** One finding per pinned party: every key of that party a signature rested on is among the pins. */
async function pinFindings(relied: ReliedKey[], pins: PinnedKeys): Promise<Finding[]> {
  const findings: Finding[] = [];
  for (const party of ['orchestrator', 'provider'] as const) {
    const pinned = pins[party];
    if (!pinned) continue;
    const allowed = new Set(await Promise.all(((pinned.keys ?? []) as JWK[]).map((k) => calculateJwkThumbprint(k, 'sha256'))));
    const mine = relied.filter((k) => k.party === party);
    for (const key of mine) key.pinned = allowed.has(key.thumbprint);
    const foreign = mine.filter((k) => !k.pinned);
    findings.push({
      check: `${party}_keys_pinned`,
      result: foreign.length ? 'fail' : 'pass',
      evidence: foreign.length
        ? `not among the ${allowed.size} pinned ${party} keys: ${foreign.map((k) => `${k.thumbprint} (${k.used_for.join(', ')})`).join('; ')}`
        : mine.length
          ? `${mine.map((k) => k.thumbprint).join(', ')} pinned`
          : `no ${party} key was relied on`,
    });
  }
  return findings;
}

export async function adjudicate(bundle: EvidenceBundle, pins: PinnedKeys = {}): Promise<Adjudication> {
  const findings: Finding[] = [];
  const keys = keyRecorder(bundle);
  const add = (check: string, result: Finding['result'], evidence: string) => findings.push({ check, result, evidence });
  const charge = bundle.charge;
  const chargedAt = Date.parse(charge.authorized_at);

  // The human's authorization, frozen: the mandate JWS, checked at the time of the charge.
  let claims: Record<string, unknown> | null = null;
  if (!bundle.mandate.mandate_jws) add('mandate_signed', 'missing', 'no mandate_jws');
  else {
    try {
      ({ payload: claims } = await keys.verify('orchestrator', 'mandate_jws', bundle.mandate.mandate_jws, {
        typ: 'oap-mandate+jwt',
        algorithms: ED25519_ALGS,
        issuer: bundle.orchestrator.issuer,
        currentDate: new Date(chargedAt),
      }));
      add('mandate_signed', claims.mandate_id === charge.mandate_id ? 'pass' : 'fail', `mandate_jws by ${bundle.orchestrator.issuer} for ${String(claims.mandate_id)}`);
    } catch (error) {
      add('mandate_signed', 'fail', `mandate_jws does not verify at ${charge.authorized_at}: ${(error as Error).message}`);
      claims = decodeJwt(bundle.mandate.mandate_jws) as Record<string, unknown>;
    }
  }
  const constraints = (claims?.constraints ?? []) as MandateConstraint[];

  const approvedAt = Date.parse(String(claims?.approved_at ?? ''));
  const revokedAt = bundle.mandate.revoked_at ? Date.parse(bundle.mandate.revoked_at) : Infinity;
  const agentRevokedAt = bundle.agent.revoked_at ? Date.parse(bundle.agent.revoked_at) : Infinity;
  const active = claims !== null && approvedAt <= chargedAt && chargedAt < revokedAt && chargedAt < agentRevokedAt;
  add('mandate_active', claims ? (active ? 'pass' : 'fail') : 'missing', `approved ${String(claims?.approved_at)}, revoked ${bundle.mandate.revoked_at ?? 'never'}, agent revoked ${bundle.agent.revoked_at ?? 'never'}, charged ${charge.authorized_at}`);

  // What the human was shown bounds what was signed: the human may lower limits on the page, never widen them.
  const shown = displayedTerms(bundle.mandate.display_document);
  const shownHere = shown?.providers.find((p) => p.provider === charge.provider);

  const scope = evaluateForProvider(constraints, charge.provider, chargedAt);
  const shownInScope = !shown || (!!shownHere && shownHere.services.includes(charge.service));
  const inScope = scope.ok && scope.services.includes(charge.service) && shownInScope;
  add(
    'provider_and_service_in_scope',
    claims ? (inScope ? 'pass' : 'fail') : 'missing',
    `${scope.ok ? `signed: ${charge.provider} allows ${scope.services.join(', ')}` : `signed: ${scope.reason}`}; shown to the human: ${shown ? (shownHere ? shownHere.services.join(', ') : `not ${charge.provider}`) : 'no display document'}; charged ${charge.service}`,
  );

  const perCharge = tighter(scope.ok ? scope.max_per_charge : null, shownHere?.max_per_charge ?? null);
  const fitsPerCharge = !perCharge || (perCharge.currency === charge.currency && charge.amount <= perCharge.amount);
  const ledgerChecks = (bundle.decision?.constraint_results ?? []).filter((r) => r.type === 'mandate_spend_limit' || r.type === 'monthly_limit');
  const ledgerOk = ledgerChecks.length === 2 && ledgerChecks.every((r) => r.pass);
  add(
    'amount_within_limits',
    bundle.decision ? (fitsPerCharge && ledgerOk ? 'pass' : 'fail') : 'missing',
    `${charge.amount} ${charge.currency}; per charge ≤ ${perCharge ? perCharge.amount : 'no limit'}; ledger at charge time: ${ledgerChecks.map((r) => `${r.type} ${r.pass ? 'fit' : 'exceeded'}`).join(', ') || 'no record'}`,
  );

  // The agent's own signature over exactly what was charged, with its registered key.
  const providerUrl = bundle.provider.url || bundle.provider.issuer;
  if (!bundle.agent_request) add('agent_signed_request', 'missing', 'no signed request');
  else if (!providerUrl) add('agent_signed_request', 'missing', `the bundle does not say where ${charge.provider} serves its API, so where the request went cannot be checked`);
  else {
    const thumbprint = await calculateJwkThumbprint(bundle.agent.public_jwk);
    const boundKey = (claims?.cnf as { jkt?: string } | undefined)?.jkt;
    let verified = false;
    let detail = '';
    try {
      await verifyRequestSignature(
        { method: bundle.agent_request.method, targetUri: bundle.agent_request.target_uri, body: bundle.agent_request.body, contentDigest: bundle.agent_request.content_digest, signatureInput: bundle.agent_request.signature_input, signature: bundle.agent_request.signature },
        bundle.agent.public_jwk,
        thumbprint,
        Math.floor(chargedAt / 1000),
      );
      keys.note('agent', thumbprint, 'request signature (bound by the mandate’s cnf.jkt)');
      const signed = signedObject(bundle.agent_request.body);
      const mismatch = signedCallMismatch(bundle.agent_request, signed, {
        providerUrl,
        resourceRef: charge.resource_ref,
        service: charge.service,
        plan: charge.plan,
        charged: { amount: charge.amount, currency: charge.currency },
      });
      const keyBound = thumbprint === boundKey && thumbprint === bundle.agent.key_thumbprint;
      verified = keyBound && !mismatch;
      const price = signed?.expected_price as SignedPrice;
      const named = price == null ? 'no price' : `${String(price.amount)} ${String(price.currency)}`;
      const call = `${bundle.agent_request.method} ${bundle.agent_request.target_uri}`;
      detail = verified
        ? `signed by ${thumbprint}: ${call} for ${charge.service}/${charge.plan} at ${named}`
        : !keyBound
          ? `signed with key ${thumbprint}, but the mandate binds ${String(boundKey)} and the agent's key on record is ${bundle.agent.key_thumbprint}`
          : `${mismatch} (${call}: signed ${String(signed?.service)}/${String(signed?.plan)} at ${named}, charged ${charge.amount} ${charge.currency} by ${charge.provider}${charge.resource_ref ? ` for ${charge.resource_ref}` : ''})`;
    } catch (error) {
      detail = `the signature does not verify: ${(error as Error).message}`;
    }
    add('agent_signed_request', verified ? 'pass' : 'fail', detail);
  }

  // What the human saw is what was signed.
  const displayHash = claims?.display_hash;
  if (!bundle.mandate.display_document) add('human_approved_display', 'missing', 'no display document');
  else {
    const hash = sha256Hex(canonicalJson(JSON.parse(bundle.mandate.display_document)));
    const widened = shown ? signedBeyondShown(constraints, shown) : null;
    add(
      'human_approved_display',
      hash === displayHash && !widened ? 'pass' : 'fail',
      `display document hashes to ${hash}; the mandate records ${String(displayHash)}${widened ? `; but the signed terms exceed what was shown: ${widened}` : ''}`,
    );
  }

  // The provider's signed account of what it delivered, and of what it checked. A provider the orchestrator no
  // longer knows (no issuer in the bundle) cannot be checked either way: the orchestrator's evidence is short. A
  // known one that publishes no keys fails its own receipt.
  if (!bundle.provider.issuer) add('provider_keys', 'missing', `the orchestrator no longer knows ${charge.provider}: nothing it signed can be checked`);
  else if (!charge.receipt) add('provider_delivered', 'missing', 'no receipt from the provider');
  else {
    try {
      const { payload } = await keys.verify('provider', 'receipt', charge.receipt, { typ: 'oap-receipt+jwt', algorithms: ED25519_ALGS, issuer: bundle.provider.issuer });
      const matches = payload.charge_id === charge.charge_id && payload.amount === charge.amount && payload.currency === charge.currency && payload.agent_id === charge.agent_id && payload.mandate_id === charge.mandate_id;
      add('provider_delivered', matches ? 'pass' : 'fail', matches ? `receipt for ${charge.charge_id}, resource ${String(payload.resource_id)}` : 'the receipt describes another charge');
      const providerChecks = (payload.constraint_results as { pass: boolean }[] | undefined) ?? [];
      const providerOk = payload.mandate_status_at_decision === 'active' && providerChecks.every((r) => r.pass);
      add('provider_checks', providerOk ? 'pass' : 'fail', `the provider recorded the mandate ${String(payload.mandate_status_at_decision)} and ${providerChecks.filter((r) => !r.pass).length} failed checks`);
    } catch (error) {
      add('provider_delivered', 'fail', `the receipt does not verify: ${(error as Error).message}`);
    }
  }

  // The orchestrator's trail for this charge: every event intact and in chain order, the ones the
  // charge's state implies all there, none past the signed head that covers them.
  add('audit_trail', ...(bundle.format === 'oap-evidence/1' ? await unprovenAuditFinding(bundle, keys.verifyHead) : await chainProofFinding(bundle, keys.verifyHead)));
  add('provider_trail', ...(await providerTrailFinding(bundle, keys.verifyHead)));
  findings.push(...(await pinFindings(keys.relied, pins)));

  return { ...decide(findings), format: bundle.format, keys: keys.relied };
}

type VerifyHead = ReturnType<typeof keyRecorder>['verifyHead'];

/**
 * Format 2's chain proof (§4: hash = sha256(prev_hash ‖ JCS(event without hash)), seq dense): the
 * events split into runs of consecutive seqs; each run relinks event by event and ends exactly at a
 * head the orchestrator signed, so an event edited (hash recomputed or not), dropped or inserted
 * anywhere breaks a link or a head.
 */
async function chainProofFinding(bundle: EvidenceBundle, verifyHead: VerifyHead): Promise<[Finding['result'], string]> {
  const { events, heads = [] } = bundle.audit.orchestrator;
  const charge = bundle.charge;
  if (events.length === 0) return ['missing', 'no audit events for this charge'];
  if (heads.length === 0) return ['missing', 'no signed head covers the trail, so nothing proves it unedited'];
  const principal = events[0]!.principal;
  const runEnds: AuditEvent[] = [];
  for (const [i, event] of events.entries()) {
    if (!hashMatches(event)) return ['fail', `event seq ${event.seq} does not match its hash`];
    if (event.principal !== principal) return ['fail', `the trail mixes principals at seq ${event.seq}`];
    const prev = events[i - 1];
    if (prev && (event.seq <= prev.seq || event.time < prev.time)) return ['fail', `events out of chain order at seq ${event.seq}`];
    if (prev && event.seq === prev.seq + 1 && event.prev_hash !== prev.hash) return ['fail', `event seq ${event.seq} does not link to seq ${prev.seq} (prev_hash differs)`];
    const next = events[i + 1];
    if (!next || next.seq !== event.seq + 1) runEnds.push(event);
  }
  const signed = new Map<number, string>();
  for (const head of heads) {
    let claims: Record<string, unknown>;
    try {
      ({ payload: claims } = await verifyHead('orchestrator', head.jws));
    } catch (error) {
      return ['fail', `the signed head at seq ${head.seq} does not verify: ${(error as Error).message}`];
    }
    if (claims.seq !== head.seq || claims.hash !== head.hash) return ['fail', 'a signed head does not say what the bundle says it does'];
    if (claims.sub !== principal) return ['fail', `the signed head at seq ${head.seq} is of ${String(claims.sub)}, the events of ${principal}`];
    signed.set(head.seq, head.hash);
  }
  // A run that does not end at a signed head proves nothing: the events up to where it stops could be anything.
  const unproven = runEnds.find((end) => signed.get(end.seq) !== end.hash);
  if (unproven) return ['fail', `the run ending at seq ${unproven.seq} does not end at a signed head: events are missing or altered`];
  const has = (action: string) => events.some((e) => e.action === action && e.outcome === 'succeeded' && e.target === charge.charge_id);
  if (!has('charge.authorize')) return ['fail', 'no record of the authorization'];
  if (['captured', 'refunded'].includes(charge.status) && !has('charge.capture')) return ['fail', `the charge is ${charge.status} but its capture is not in the trail`];
  return ['pass', `${events.length} events in ${runEnds.length} run${runEnds.length === 1 ? '' : 's'}, each chained to a head the orchestrator signed (the last at seq ${runEnds.at(-1)!.seq})`];
}

/**
 * Format 1 (no chain proof): the charge's own events, each checked alone, for bundles kept from before.
 * What is wrong in them still fails; what is right proves nothing, since any bundle can be relabeled
 * format 1 with events whose hashes anyone can compute: the trail is then missing, never a pass.
 */
async function unprovenAuditFinding(bundle: EvidenceBundle, verifyHead: VerifyHead): Promise<[Finding['result'], string]> {
  const { events, signed_head: head } = bundle.audit.orchestrator;
  const charge = bundle.charge;
  if (events.length === 0) return ['missing', 'no audit events for this charge'];
  const broken = events.find((e) => !hashMatches(e));
  if (broken) return ['fail', `event seq ${broken.seq} does not match its hash`];
  const disordered = events.findIndex((e, i) => i > 0 && (e.seq <= events[i - 1]!.seq || e.time < events[i - 1]!.time));
  if (disordered !== -1) return ['fail', `events out of chain order at seq ${events[disordered]!.seq}`];
  const has = (action: string) => events.some((e) => e.action === action && e.outcome === 'succeeded' && e.target === charge.charge_id);
  if (!has('charge.authorize')) return ['fail', 'no record of the authorization'];
  if (['captured', 'refunded'].includes(charge.status) && !has('charge.capture')) return ['fail', `the charge is ${charge.status} but its capture is not in the trail`];
  if (head) {
    try {
      const { payload } = await verifyHead('orchestrator', head.jws);
      if (payload.seq !== head.seq || payload.hash !== head.hash) return ['fail', 'the signed head does not say what the bundle says it does'];
    } catch {
      return ['fail', 'the signed head does not verify'];
    }
    const last = events.at(-1)!;
    if (last.seq === head.seq && last.hash !== head.hash) return ['fail', `event seq ${last.seq} differs from the signed head`];
  }
  return ['missing', `${events.length} events in chain order, each intact, but format oap-evidence/1 carries no chain proof: nothing shows them unedited`];
}

/** The provider's own trail: intact, in order, and recording the provision it was paid for. */
async function providerTrailFinding(bundle: EvidenceBundle, verifyHead: VerifyHead): Promise<[Finding['result'], string]> {
  const trail = bundle.audit.provider;
  if (!trail || trail.events.length === 0) return ['missing', 'the provider’s trail was not available'];
  const broken = trail.events.find((e) => !hashMatches(e));
  if (broken) return ['fail', `provider event seq ${broken.seq} does not match its hash`];
  if (trail.events.some((e, i) => i > 0 && e.seq <= trail.events[i - 1]!.seq)) return ['fail', 'provider events out of chain order'];
  const provisioned = trail.events.some((e) => (e.action === 'resource.provision' || e.action === 'resource.update') && e.outcome === 'succeeded' && e.related.includes(bundle.charge.charge_id));
  if (!provisioned) return ['fail', 'the provider’s trail has no provision or plan change paid by this charge'];
  if (bundle.format !== 'oap-evidence/1' && trail.heads) {
    // Each event is proven alone by a head the provider signed at it: edited, even with its hash recomputed, it no longer matches.
    const account = trail.events[0]!.principal;
    for (const event of trail.events) {
      const head = trail.heads.find((h) => h.seq === event.seq);
      if (!head) return ['fail', `provider event seq ${event.seq} comes with no head the provider signed at it`];
      let claims: Record<string, unknown>;
      try {
        ({ payload: claims } = await verifyHead('provider', head.jws));
      } catch {
        return ['fail', `the provider’s head at seq ${head.seq} does not verify`];
      }
      if (claims.sub !== account || event.principal !== account) return ['fail', `provider event seq ${event.seq} and its head are not of one account`];
      if (claims.seq !== event.seq || claims.hash !== event.hash) return ['fail', `provider event seq ${event.seq} is not the one the provider signed`];
    }
    return ['pass', `${trail.events.length} provider events, each proven by a head the provider signed at it, the provision among them`];
  }
  if (trail.signed_head) {
    try {
      await verifyHead('provider', trail.signed_head.jws);
    } catch {
      return ['fail', 'the provider’s signed head does not verify'];
    }
  }
  // An older provider's trail: each event intact, but nothing the provider signed ties them to its chain.
  return ['missing', `${trail.events.length} provider events, the provision among them, but the provider’s trail carries no chain proof`];
}

/** Checks whose missing evidence leaves the verdict to the others. */
const CORROBORATING = new Set(['provider_trail']);

function decide(findings: Finding[]): Omit<Adjudication, 'format' | 'keys'> {
  const failed = findings.find((f) => f.result === 'fail');
  const missingReceipt = findings.find((f) => f.check === 'provider_delivered' && f.result === 'missing');
  const missingMandate = findings.find((f) => f.check === 'mandate_signed' && f.result === 'missing');
  if (failed) return { adjudicator: ADJUDICATOR_VERSION, verdict: 'outside_scope', failing_party: PARTY[failed.check] ?? 'orchestrator', findings };
  if (missingReceipt) return { adjudicator: ADJUDICATOR_VERSION, verdict: 'insufficient_evidence', failing_party: 'provider', findings };
  if (missingMandate || findings.some((f) => f.result === 'missing' && !CORROBORATING.has(f.check))) return { adjudicator: ADJUDICATOR_VERSION, verdict: 'insufficient_evidence', failing_party: 'orchestrator', findings };
  return { adjudicator: ADJUDICATOR_VERSION, verdict: 'within_scope', failing_party: null, findings };
}

type Money = { amount: number; currency: string };
type ShownTerms = { providers: { provider: string; services: string[]; max_per_charge: Money | null }[]; spend_limit: Money; expires_at: string };

/** The terms of the display document the approval page rendered (workers/orchestrator/mandates.ts DisplayDocument). */
function displayedTerms(document: string | null): ShownTerms | null {
  if (!document) return null;
  try {
    const parsed = JSON.parse(document) as Partial<ShownTerms>;
    return Array.isArray(parsed.providers) && parsed.spend_limit && parsed.expires_at ? (parsed as ShownTerms) : null;
  } catch {
    return null;
  }
}

/** The lower of two per-charge limits (null is no limit). */
function tighter(a: Money | null, b: Money | null): Money | null {
  if (!a) return b;
  if (!b) return a;
  return a.currency !== b.currency ? a : a.amount <= b.amount ? a : b;
}

/** Where the signed constraints allow more than the human was shown, in words; null when they do not. */
function signedBeyondShown(constraints: MandateConstraint[], shown: ShownTerms): string | null {
  for (const c of constraints) {
    const here = 'provider' in c ? shown.providers.find((p) => p.provider === c.provider) : undefined;
    if (c.type === 'provider_services' && (!here || c.services.some((s) => !here.services.includes(s)))) return `${c.provider}: ${c.services.join(', ')}`;
    if (c.type === 'max_per_charge' && here?.max_per_charge && (c.limit.currency !== here.max_per_charge.currency || c.limit.amount > here.max_per_charge.amount)) return `${c.provider}: ${c.limit.amount} per charge`;
    if (c.type === 'spend_limit' && (c.limit.currency !== shown.spend_limit.currency || c.limit.amount > shown.spend_limit.amount)) return `a monthly limit of ${c.limit.amount}`;
    if (c.type === 'not_after' && Date.parse(c.time) > Date.parse(shown.expires_at)) return `until ${c.time}`;
  }
  for (const p of shown.providers) {
    if (p.max_per_charge && !constraints.some((c) => c.type === 'max_per_charge' && c.provider === p.provider)) return `${p.provider}: no per-charge limit`;
  }
  return null;
}
