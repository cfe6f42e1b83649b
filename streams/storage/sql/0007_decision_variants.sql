-- Canary / shadow experiments (streams/routing/experiments.py): the arm that served each decision, the
-- candidate's name, and what a shadow candidate would have chosen. Old rows read as control, no shadow.
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS variant LowCardinality(String) DEFAULT 'control';
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS experiment LowCardinality(String) DEFAULT '';
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS shadow_model Nullable(String);
ALTER TABLE decisions ADD COLUMN IF NOT EXISTS shadow_policy Nullable(String)
