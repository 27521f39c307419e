-- Vendor deletions by time (Google Health API DELETE): every reading of each named
-- (user, vendor, metric) whose start_time lies in [range_start, range_end) goes, whatever
-- its document or source. user_id is part of the match so one user's deletion can never
-- touch another's rows; readings_user_metric_time_idx serves the range. Returns the
-- removed readings' identities (tombstones on the changelog).
WITH t AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[])
        AS t (user_id, vendor, metric, range_start, range_end)
)
DELETE FROM readings AS r
USING t
WHERE r.user_id = t.user_id
  AND r.metric = t.metric
  AND r.start_time >= t.range_start
  AND r.start_time < t.range_end
  AND r.vendor = t.vendor
RETURNING r.user_id, r.vendor, r.source_record_id, r.source, r.metric,
          r.start_time, r.end_time
