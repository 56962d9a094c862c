-- Names that must be unique across all accounts of a provider (a domain, a Worker's name).
CREATE TABLE service_names (
  kind        TEXT NOT NULL,
  name        TEXT NOT NULL,
  account_id  TEXT NOT NULL,
  resource_id TEXT NOT NULL,
  created_at  TEXT NOT NULL,
  PRIMARY KEY (kind, name)
);
CREATE INDEX service_names_by_resource ON service_names (resource_id);
