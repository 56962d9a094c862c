-- Signed audit chain heads, copied from the ledger objects: the queryable record of what each role attested.
CREATE TABLE audit_heads (
  principal TEXT    NOT NULL,
  seq       INTEGER NOT NULL,
  hash      TEXT    NOT NULL,
  time      TEXT    NOT NULL,
  jws       TEXT    NOT NULL,
  PRIMARY KEY (principal, seq)
) WITHOUT ROWID;
