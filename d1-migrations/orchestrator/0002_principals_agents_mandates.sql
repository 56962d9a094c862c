-- Principals and their sessions; routing indexes for agents and mandates,
-- whose state lives in the principal's ledger object (one writer per principal).

CREATE TABLE principals (
  id             TEXT PRIMARY KEY,
  email          TEXT NOT NULL UNIQUE COLLATE NOCASE,
  email_verified INTEGER NOT NULL DEFAULT 0,
  password_hash  TEXT NOT NULL,
  created_at     TEXT NOT NULL
);

CREATE TABLE email_verifications (
  token_hash   TEXT PRIMARY KEY,
  principal_id TEXT NOT NULL REFERENCES principals (id),
  expires_at   INTEGER NOT NULL,
  used_at      INTEGER
);

-- Mail in local development: nothing leaves the machine; README explains how to read it.
CREATE TABLE mail_outbox (
  id         TEXT PRIMARY KEY,
  to_address TEXT NOT NULL,
  subject    TEXT NOT NULL,
  body       TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  subject_id TEXT NOT NULL,
  csrf_token TEXT NOT NULL,
  auth_time  INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_by_subject ON sessions (subject_id);

CREATE TABLE sign_in_failures (
  subject      TEXT PRIMARY KEY,
  failures     INTEGER NOT NULL,
  window_start INTEGER NOT NULL
);

-- One key thumbprint belongs to one agent (PROTOCOL.md §2.1); the row routes a proof to its principal.
CREATE TABLE agent_keys (
  jkt          TEXT PRIMARY KEY,
  agent_id     TEXT NOT NULL UNIQUE,
  principal_id TEXT NOT NULL
);
CREATE INDEX agent_keys_by_principal ON agent_keys (principal_id);

-- Where a mandate lives. principal_id is null while a first-contact request awaits its human.
CREATE TABLE mandate_routes (
  mandate_id   TEXT PRIMARY KEY,
  principal_id TEXT,
  requester_jkt TEXT NOT NULL
);
CREATE INDEX mandate_routes_by_principal ON mandate_routes (principal_id);

-- First-contact mandate requests from unregistered keys (device-flow style), until a human decides.
CREATE TABLE first_contact_requests (
  mandate_id     TEXT PRIMARY KEY REFERENCES mandate_routes (mandate_id),
  jkt            TEXT NOT NULL,
  public_jwk     TEXT NOT NULL,
  agent_name     TEXT NOT NULL,
  request        TEXT NOT NULL,
  user_code_hash TEXT NOT NULL,
  origin_address TEXT,
  status         TEXT NOT NULL,
  created_at     TEXT NOT NULL,
  expires_at     INTEGER NOT NULL,
  last_poll_at   INTEGER,
  decided_by     TEXT,
  decided_at     TEXT
);

-- Pairwise subject per (principal, provider): providers cannot correlate principals by sub.
CREATE TABLE pairwise_subjects (
  principal_id TEXT NOT NULL,
  provider_id  TEXT NOT NULL,
  sub          TEXT NOT NULL UNIQUE,
  PRIMARY KEY (principal_id, provider_id)
);
