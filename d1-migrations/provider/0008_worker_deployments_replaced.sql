-- The version a redeploy replaced, kept until the redeploy is final. If the new
-- version is undone (its saga failed after provisioning), the name goes back to
-- serving the old one rather than nothing; once the old resource is retired,
-- its entry goes too.
CREATE TABLE worker_deployments_replaced (
  resource_id          TEXT    PRIMARY KEY, -- the redeploy
  name                 TEXT    NOT NULL,
  previous_resource_id TEXT    NOT NULL,
  version              INTEGER NOT NULL,
  module               TEXT    NOT NULL,
  module_sha256        TEXT    NOT NULL,
  module_bytes         INTEGER NOT NULL,
  suspended_at         TEXT,
  deployed_at          TEXT    NOT NULL
);
CREATE INDEX worker_deployments_replaced_by_previous ON worker_deployments_replaced (previous_resource_id);
