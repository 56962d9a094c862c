-- A key lists the first-contact requests it made (PROTOCOL §2.4) without a scan of every request.
CREATE INDEX first_contact_by_key ON first_contact_requests (jkt, created_at);
