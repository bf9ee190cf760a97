-- Idempotency-Key also covers requests that create reference data, not events (a
-- category, an attachment: services/idempotency.py). Their rows name no stream; one
-- table keeps one key space per principal, whatever the key's request created.
ALTER TABLE idempotency_keys ALTER COLUMN stream_id DROP NOT NULL;
