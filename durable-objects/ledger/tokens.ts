// The provider side of authorization, kept in the account's ledger object:
// single use of attestations and DPoP proofs, the agents that act on the
// account, and the audit of each token issued or refused.
import { iso, refuse, type LedgerTx, type Outcome } from './context';
import { consumeNonce } from './nonces';

export type TokenIssue = {
  iss: string;
  assertion_jti: string;
  assertion_exp_ms: number;
  dpop_jkt: string;
  agent_id: string;
  mandate_id: string;
  token_jti: string;
  scope: string;
  account_created: boolean;
};

/**
 * §2.3: the attestation's jti is never accepted twice. (Its sub names this
 * account, so a replay always lands here; the DPoP proof's jti was already
 * consumed in the key's own ledger.)
 */
export function recordTokenIssue(tx: LedgerTx, issue: TokenIssue): Outcome<object> {
  const actor = { type: 'agent' as const, id: issue.agent_id };
  if (issue.account_created) {
    tx.audit({ actor: { type: 'orchestrator', id: issue.iss }, action: 'account.create', outcome: 'succeeded', mandate_id: issue.mandate_id, related: [issue.agent_id] });
  }
  // Skew: an assertion is remembered past its exp for as long as its iat may lead the clock.
  if (!consumeNonce(tx, `assertion:${issue.iss}:${issue.assertion_jti}`, issue.assertion_exp_ms + 120_000)) {
    tx.audit({ actor, action: 'token.issue', mandate_id: issue.mandate_id, outcome: 'refused', reason: 'replayed', related: [issue.assertion_jti] });
    return refuse('invalid_grant', 'This attestation was already used.');
  }
  tx.sql.exec(
    `INSERT INTO account_agents (agent_id, jkt, iss, first_seen, last_seen) VALUES (?, ?, ?, ?, ?)
     ON CONFLICT (agent_id) DO UPDATE SET last_seen = excluded.last_seen, jkt = excluded.jkt`,
    issue.agent_id,
    issue.dpop_jkt,
    issue.iss,
    iso(tx.now),
    iso(tx.now),
  );
  tx.audit({ actor, action: 'token.issue', mandate_id: issue.mandate_id, target: issue.token_jti, outcome: 'succeeded', related: [issue.assertion_jti] });
  return { ok: true };
}

/** A refusal at a provider that could be tied to this account (or to the provider's own chain). */
export function recordRefusal(
  tx: LedgerTx,
  refusal: { actor: { type: 'agent' | 'system' | 'orchestrator' | 'principal' | 'provider'; id: string }; action: string; reason: string; mandate_id?: string; target?: string | null; related?: string[] },
) {
  tx.audit({ actor: refusal.actor, action: refusal.action, target: refusal.target ?? null, outcome: 'refused', reason: refusal.reason, mandate_id: refusal.mandate_id ?? null, related: refusal.related ?? [] });
}
