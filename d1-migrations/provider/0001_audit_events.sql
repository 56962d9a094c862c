-- The queryable audit trail (PROTOCOL.md §4). The principal's ledger object
-- holds the order and the chain head; it copies each event here, in order.
CREATE TABLE audit_events (
  principal    TEXT    NOT NULL,
  seq          INTEGER NOT NULL,
  id           TEXT    NOT NULL UNIQUE,
  time         TEXT    NOT NULL,
  actor_type   TEXT    NOT NULL,
  actor_id     TEXT    NOT NULL,
  mandate_id   TEXT,
  action       TEXT    NOT NULL,
  target       TEXT,
  outcome      TEXT    NOT NULL,
  reason       TEXT,
  amount       INTEGER,
  currency     TEXT,
  request_hash TEXT,
  related      TEXT    NOT NULL,
  prev_hash    TEXT    NOT NULL,
  hash         TEXT    NOT NULL,
  PRIMARY KEY (principal, seq)
) WITHOUT ROWID;

CREATE INDEX audit_events_by_actor ON audit_events (principal, actor_id, seq);
CREATE INDEX audit_events_by_mandate ON audit_events (principal, mandate_id, seq);
CREATE INDEX audit_events_by_time ON audit_events (principal, time);
