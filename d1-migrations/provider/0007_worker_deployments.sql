-- The Worker each name serves (service worker-script): one row per name, held
-- by one account. A redeploy by that account replaces the row with the new
-- resource and the next version; the runner reads it on every request.
CREATE TABLE worker_deployments (
  name          TEXT    PRIMARY KEY,
  account_id    TEXT    NOT NULL,
  resource_id   TEXT    NOT NULL,
  version       INTEGER NOT NULL,
  module        TEXT    NOT NULL,
  module_sha256 TEXT    NOT NULL,
  module_bytes  INTEGER NOT NULL,
  suspended_at  TEXT,
  deployed_at   TEXT    NOT NULL
);
-- deprovision and suspend find the row by the resource that holds it.
CREATE UNIQUE INDEX worker_deployments_by_resource ON worker_deployments (resource_id);
