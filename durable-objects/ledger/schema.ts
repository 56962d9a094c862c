// The ledger object's SQLite schema, one entry per version. An object applies
// the versions it has not yet seen when it starts (under blockConcurrencyWhile).
import { GENESIS_HASH } from '../../workers/lib/audit';

export const LEDGER_MIGRATIONS: string[] = [
  // 1: audit chain, outbox to D1, schedule, idempotency records
  `CREATE TABLE audit_head (only INTEGER PRIMARY KEY CHECK (only = 1), principal TEXT, seq INTEGER NOT NULL, hash TEXT NOT NULL);
   INSERT INTO audit_head (only, principal, seq, hash) VALUES (1, NULL, 0, '${GENESIS_HASH}');
   CREATE TABLE audit_outbox (seq INTEGER PRIMARY KEY, event TEXT NOT NULL);
   CREATE TABLE schedule (task TEXT PRIMARY KEY, due_at INTEGER NOT NULL);
   CREATE TABLE idempotency (
     scope TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, state TEXT NOT NULL,
     status INTEGER, headers TEXT, body TEXT, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
     PRIMARY KEY (scope, key));`,
  // 2: single-use values; agents and mandates (orchestrator); events owed to providers; agents seen (provider)
  `CREATE TABLE seen_nonces (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
   CREATE TABLE agents (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, public_jwk TEXT NOT NULL, jkt TEXT NOT NULL UNIQUE,
     status TEXT NOT NULL, via TEXT NOT NULL, created TEXT NOT NULL, revoked_at TEXT);
   CREATE TABLE mandates (
     id TEXT PRIMARY KEY, agent_id TEXT NOT NULL REFERENCES agents (id), status TEXT NOT NULL,
     requested TEXT NOT NULL, approved TEXT, first_contact INTEGER NOT NULL, created TEXT NOT NULL,
     pending_until INTEGER NOT NULL, last_poll_at INTEGER, decided_at TEXT, approver_email_hint TEXT,
     display_hash TEXT, mandate_jws TEXT, revoked_at TEXT);
   CREATE INDEX mandates_by_agent ON mandates (agent_id, created);
   CREATE TABLE provider_events (
     id INTEGER PRIMARY KEY AUTOINCREMENT, provider_id TEXT NOT NULL, type TEXT NOT NULL, payload TEXT NOT NULL,
     attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL, created TEXT NOT NULL);
   CREATE TABLE account_agents (agent_id TEXT PRIMARY KEY, jkt TEXT NOT NULL, iss TEXT NOT NULL, first_seen TEXT NOT NULL, last_seen TEXT NOT NULL);`,
  // 3: money. Holds (two-phase charges), running totals per (period, scope),
  // the principal's own limit, budget alerts and notifications, webhooks.
  `ALTER TABLE mandates ADD COLUMN root TEXT;
   CREATE TABLE limits (scope TEXT PRIMARY KEY, amount INTEGER NOT NULL, currency TEXT NOT NULL, set_by TEXT, set_at TEXT);
   CREATE TABLE holds (
     id TEXT PRIMARY KEY, period TEXT NOT NULL, mandate_id TEXT, mandate_root TEXT, provider TEXT, service TEXT, plan TEXT,
     agent_id TEXT, amount INTEGER NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL, idempotency_key TEXT,
     resource_ref TEXT, description TEXT, evidence TEXT, receipt TEXT, created INTEGER NOT NULL, expires_at INTEGER NOT NULL,
     resolved_at INTEGER, UNIQUE (provider, idempotency_key));
   CREATE INDEX holds_pending ON holds (status, expires_at);
   CREATE INDEX holds_by_created ON holds (created);
   CREATE INDEX holds_by_service ON holds (service, created);
   CREATE TABLE spend_totals (period TEXT NOT NULL, scope TEXT NOT NULL, amount INTEGER NOT NULL, PRIMARY KEY (period, scope));
   CREATE TABLE alerts_sent (period TEXT NOT NULL, scope TEXT NOT NULL, threshold INTEGER NOT NULL, PRIMARY KEY (period, scope, threshold));
   CREATE TABLE notifications (id TEXT PRIMARY KEY, type TEXT NOT NULL, created TEXT NOT NULL, data TEXT NOT NULL);
   CREATE TABLE webhook_endpoints (id TEXT PRIMARY KEY, url TEXT NOT NULL, secret TEXT NOT NULL, created TEXT NOT NULL);
   CREATE TABLE webhook_deliveries (
     id INTEGER PRIMARY KEY AUTOINCREMENT, endpoint_id TEXT NOT NULL, event TEXT NOT NULL, attempts INTEGER NOT NULL,
     next_attempt_at INTEGER NOT NULL);`,
  // 4: the provider's side of provisioning: sagas, resources, and the charge
  // calls owed to the orchestrator (capture or void), retried by the alarm.
  `CREATE TABLE sagas (
     id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, agent_id TEXT NOT NULL, mandate_id TEXT NOT NULL,
     orchestrator TEXT NOT NULL, principal_sub TEXT NOT NULL, token_jti TEXT NOT NULL, service TEXT NOT NULL, plan TEXT NOT NULL,
     amount INTEGER NOT NULL, currency TEXT NOT NULL, hold_id TEXT NOT NULL, charge_id TEXT, resource_id TEXT NOT NULL,
     request TEXT NOT NULL, charge_decision TEXT, error TEXT, credentials TEXT, created INTEGER NOT NULL, updated INTEGER NOT NULL,
     deadline INTEGER NOT NULL);
   CREATE INDEX sagas_open ON sagas (state, deadline);
   CREATE TABLE resources (
     id TEXT PRIMARY KEY, service TEXT NOT NULL, plan TEXT NOT NULL, status TEXT NOT NULL, agent_id TEXT NOT NULL,
     mandate_id TEXT NOT NULL, parameters TEXT NOT NULL, fields TEXT, charge_id TEXT, created TEXT NOT NULL, updated TEXT NOT NULL);
   CREATE TABLE charge_outbox (
     id INTEGER PRIMARY KEY AUTOINCREMENT, saga_id TEXT NOT NULL, action TEXT NOT NULL, charge_id TEXT NOT NULL,
     orchestrator TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL);`,
  // 5: recurring plans: when a resource's plan renews.
  `ALTER TABLE resources ADD COLUMN billing TEXT;
   ALTER TABLE resources ADD COLUMN renews_at INTEGER;
   CREATE INDEX resources_renewals ON resources (status, renews_at);`,
  // 6: a paid call's saga is keyed by its Idempotency-Key too, so a retry after a crash (the key's
  // record still "in progress", its lease run out) finds the saga instead of paying twice.
  `ALTER TABLE sagas ADD COLUMN request_key TEXT;
   ALTER TABLE sagas ADD COLUMN audit_event_id TEXT;
   CREATE UNIQUE INDEX sagas_by_request_key ON sagas (request_key) WHERE state != 'voided';`,
  // 7: signed chain heads: every so often the role signs (principal, seq, hash, time), so that a
  // trail cut short, or an object rolled back, is caught by anyone holding a signed head.
  `CREATE TABLE signed_heads (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, time TEXT NOT NULL, jws TEXT NOT NULL);`,
  // 8: evidence and disputes: the display document the human approved, kept as shown; disputes.
  `ALTER TABLE mandates ADD COLUMN display_document TEXT;
   CREATE TABLE disputes (
     id TEXT PRIMARY KEY, charge_id TEXT NOT NULL, reason TEXT NOT NULL, verdict TEXT NOT NULL, failing_party TEXT,
     findings TEXT NOT NULL, adjudicator TEXT NOT NULL, evidence TEXT NOT NULL, created TEXT NOT NULL);
   CREATE INDEX disputes_by_charge ON disputes (charge_id);`,
  // 9: deletes owed to a service backend (stop serving, drop storage), retried until it confirms.
  `CREATE TABLE deprovision_outbox (
     resource_id TEXT PRIMARY KEY, service TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL);`,
  // 10: plan changes and partial refunds. A hold remembers how much of it was refunded, each
  // refund applied once per key; an update saga keeps what it replaced (to put it back if the
  // orchestrator refuses the capture) and the credit it owes; a refund owed to the orchestrator
  // carries its body; a resource names the local hold of its current period beside the charge.
  `ALTER TABLE holds ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0;
   CREATE TABLE refunds (
     charge_id TEXT NOT NULL, key TEXT NOT NULL, amount INTEGER NOT NULL, reason TEXT, created INTEGER NOT NULL,
     PRIMARY KEY (charge_id, key));
   ALTER TABLE sagas ADD COLUMN previous_plan TEXT;
   ALTER TABLE sagas ADD COLUMN previous_charge_id TEXT;
   ALTER TABLE sagas ADD COLUMN previous_hold_id TEXT;
   ALTER TABLE sagas ADD COLUMN credit INTEGER NOT NULL DEFAULT 0;
   ALTER TABLE resources ADD COLUMN hold_id TEXT;
   ALTER TABLE charge_outbox ADD COLUMN body TEXT;`,
  // 11: the orchestrator's charge id on the local hold it mirrors, for the charges no saga names
  // (renewals), so that a refund decided there (a dispute) finds its hold here.
  `ALTER TABLE holds ADD COLUMN remote_charge_id TEXT;
   CREATE INDEX holds_by_remote_charge ON holds (remote_charge_id) WHERE remote_charge_id IS NOT NULL;`,
  // 12: a renewal's hold says so: velocity limits count what agents asked for, not what the calendar renews.
  `ALTER TABLE holds ADD COLUMN kind TEXT;`,
  // 13: fewer b-trees written per charge (each index is one more). One covering index answers
  // what the hot path asks of holds (velocity counts, by service or not; pending holds to
  // expire) without reading the rows, and a single-use value is stored in its key's b-tree alone.
  `DROP INDEX holds_pending;
   DROP INDEX holds_by_created;
   DROP INDEX holds_by_service;
   CREATE INDEX holds_by_status ON holds (status, created, service, kind, expires_at);
   CREATE TABLE seen_nonces_keyed (nonce TEXT PRIMARY KEY, expires_at INTEGER NOT NULL) WITHOUT ROWID;
   INSERT INTO seen_nonces_keyed (nonce, expires_at) SELECT nonce, expires_at FROM seen_nonces;
   DROP TABLE seen_nonces;
   ALTER TABLE seen_nonces_keyed RENAME TO seen_nonces;`,
  // 14: a resource a declined renewal suspended is tried again for a grace period, counted from when it was
  // suspended. One suspended before this stays as it was, final: no try charges for what its human took as ended.
  `ALTER TABLE resources ADD COLUMN suspended_at INTEGER;
   UPDATE resources SET suspended_at = renews_at, renews_at = NULL WHERE status = 'suspended';`,
  // 15: what a paid renewal owes the service backend (a domain's expiry moved on, a suspension lifted), retried
  // until it confirms: the renewal is paid for, so its backend must not be left behind by one failure.
  `CREATE TABLE backend_renewals (resource_id TEXT PRIMARY KEY, attempts INTEGER NOT NULL, next_attempt_at INTEGER NOT NULL);`,
  // 16: mandates approved before their end was looked at ahead (mandate-expiry.ts) are looked at once now.
  `INSERT INTO schedule (task, due_at) SELECT 'mandate_expiry', 0 WHERE EXISTS (SELECT 1 FROM mandates WHERE status = 'active')
     ON CONFLICT (task) DO UPDATE SET due_at = 0;`,
  // 17: a superseded mandate names the approved mandate that superseded it (the chain read forward, by agents that
  // follow it to the mandate in force), written when it is superseded; those superseded before this are found now.
  `ALTER TABLE mandates ADD COLUMN superseded_by TEXT;
   UPDATE mandates SET superseded_by = (SELECT s.id FROM mandates s WHERE s.approved IS NOT NULL AND json_extract(s.approved, '$.supersedes') = mandates.id)
     WHERE status = 'superseded';`,
  // 18: why a resource is suspended (the refusal's code, whose check it was, where a human lifts it), for its agent to
  // tell the human: a renewal the account's own limit refused here reaches no one at the orchestrator otherwise.
  // Resources suspended before this say only that they are.
  `ALTER TABLE resources ADD COLUMN suspension TEXT;`,
];
