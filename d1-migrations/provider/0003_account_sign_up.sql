-- Sign-up for the provider's own humans, as at the orchestrator (PROTOCOL.md §2.0).

CREATE TABLE email_verifications (
  token_hash TEXT PRIMARY KEY,
  subject_id TEXT NOT NULL REFERENCES accounts (id),
  expires_at INTEGER NOT NULL,
  used_at    INTEGER
);

-- Mail in local development: nothing leaves the machine; README explains how to read it.
CREATE TABLE mail_outbox (
  id         TEXT PRIMARY KEY,
  to_address TEXT NOT NULL,
  subject    TEXT NOT NULL,
  body       TEXT NOT NULL,
  created_at TEXT NOT NULL
);

CREATE UNIQUE INDEX accounts_one_human_per_email ON accounts (email) WHERE password_hash IS NOT NULL;
