-- The squatting guard's index of held domain labels (PROTOCOL.md §3.3). Each
-- held domain has one row per key of its label's deletion neighbourhood: the
-- comparison key lowercase(skeleton(lowercase(label))) itself and every string
-- with one code point removed from it (symmetric delete). The held labels that
-- may be within one edit of a requested label are then found by an indexed
-- IN lookup of the requested label's own neighbourhood, not by a scan of every
-- held name; the Worker confirms each candidate with the exact edit test.
CREATE TABLE domain_label_keys (
  neighbour TEXT NOT NULL,
  name      TEXT NOT NULL, -- the held domain, ASCII: service_names.name where kind = 'domain'
  PRIMARY KEY (neighbour, name)
) WITHOUT ROWID;
CREATE INDEX domain_label_keys_by_name ON domain_label_keys (name);

-- However a name is released (deprovisioned, a saga undone, a crash cleaned
-- up), its keys go with it.
CREATE TRIGGER domain_label_keys_release AFTER DELETE ON service_names
WHEN OLD.kind = 'domain'
BEGIN
  DELETE FROM domain_label_keys WHERE name = OLD.name;
END;
