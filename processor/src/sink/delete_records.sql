-- Vendor deletions: every reading of each named (user, vendor, source record) goes.
-- user_id is part of the match so one user's deletion can never touch another's rows.
DELETE FROM readings AS r
USING UNNEST($1::text[], $2::text[], $3::text[]) AS t (user_id, vendor, source_record_id)
WHERE r.vendor = t.vendor
  AND r.source_record_id = t.source_record_id
  AND r.user_id = t.user_id
