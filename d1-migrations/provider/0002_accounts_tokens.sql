-- Provider accounts: auto-provisioned for an orchestrator's principal, or a
-- human's own account (with a password) that a principal may be linked to.

CREATE TABLE accounts (
  id             TEXT PRIMARY KEY,
  email          TEXT COLLATE NOCASE,
  email_verified INTEGER NOT NULL DEFAULT 0,
  password_hash  TEXT,
  created_at     TEXT NOT NULL,
  created_via    TEXT NOT NULL
);
CREATE INDEX accounts_by_email ON accounts (email);

-- (orchestrator issuer, pairwise sub) → account: how an attestation finds its account.
CREATE TABLE account_links (
  iss        TEXT NOT NULL,
  sub        TEXT NOT NULL,
  account_id TEXT NOT NULL REFERENCES accounts (id),
  linked_at  TEXT NOT NULL,
  linked_via TEXT NOT NULL,
  PRIMARY KEY (iss, sub)
);
CREATE INDEX account_links_by_account ON account_links (account_id, iss);

-- An agent asked for a token for a principal whose verified email matches an existing account.
CREATE TABLE link_requests (
  id           TEXT PRIMARY KEY,
  iss          TEXT NOT NULL,
  sub          TEXT NOT NULL,
  email        TEXT NOT NULL,
  account_id   TEXT NOT NULL REFERENCES accounts (id),
  agent_id     TEXT NOT NULL,
  mandate_id   TEXT NOT NULL,
  status       TEXT NOT NULL,
  created_at   TEXT NOT NULL,
  expires_at   INTEGER NOT NULL
);

CREATE TABLE sessions (
  token_hash TEXT PRIMARY KEY,
  subject_id TEXT NOT NULL,
  csrf_token TEXT NOT NULL,
  auth_time  INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);

CREATE TABLE sign_in_failures (
  subject      TEXT PRIMARY KEY,
  failures     INTEGER NOT NULL,
  window_start INTEGER NOT NULL
);

-- Revocations pushed by orchestrators (§2.5) or asked for at /oauth/revoke.
-- kind: mandate | agent | token. Checked on every token use.
CREATE TABLE revocations (
  iss        TEXT NOT NULL,
  kind       TEXT NOT NULL,
  subject_id TEXT NOT NULL,
  revoked_at TEXT NOT NULL,
  PRIMARY KEY (iss, kind, subject_id)
);

-- Security event tokens already applied: each is accepted once.
CREATE TABLE received_events (
  iss         TEXT NOT NULL,
  jti         TEXT NOT NULL,
  received_at TEXT NOT NULL,
  PRIMARY KEY (iss, jti)
);
