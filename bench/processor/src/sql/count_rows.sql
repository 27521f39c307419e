-- Rows of the benchmark's users ($1: LIKE pattern of the run's user-id prefix).
-- The database collation is C, so the prefix pattern is a range scan on the primary key.
SELECT count(*) FROM readings WHERE user_id LIKE $1
