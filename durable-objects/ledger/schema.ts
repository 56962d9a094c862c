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
];
