-- The virtual key a request was served under (its id, never the key): spend and traffic per key.
-- NULL for old rows and for requests under no key.
ALTER TABLE traces ADD COLUMN IF NOT EXISTS key_id LowCardinality(Nullable(String))
