-- Which principal's ledger holds a charge: the capture and void calls of a
-- provider name only the charge.
CREATE TABLE charge_routes (
  charge_id    TEXT PRIMARY KEY,
  principal_id TEXT NOT NULL,
  provider_id  TEXT NOT NULL
);
