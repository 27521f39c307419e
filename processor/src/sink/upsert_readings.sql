-- Batch upsert of canonical readings. One array per column, so this text, and the
-- statement PostgreSQL prepares for it, is the same whatever the batch size.
-- The caller collapses the batch by conflict key first: PostgreSQL refuses to
-- update the same row twice in one statement.
INSERT INTO readings AS r (
    user_id, vendor, metric, value, unit, start_time, end_time,
    source_record_id, source, ordering
)
SELECT *
FROM UNNEST(
    $1::text[], $2::text[], $3::text[], $4::float8[], $5::text[],
    $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::int8[]
)
ON CONFLICT (user_id, vendor, metric, start_time, end_time) DO UPDATE
SET value = EXCLUDED.value,
    unit = EXCLUDED.unit,
    source_record_id = EXCLUDED.source_record_id,
    source = EXCLUDED.source,
    ordering = EXCLUDED.ordering,
    updated_at = now()
-- NULL ordering means the vendor gave no recency anchor: such a reading counts as
-- newest, and a stored row without one may be replaced by anything.
WHERE (r.ordering IS NULL
       OR EXCLUDED.ordering IS NULL
       OR EXCLUDED.ordering >= r.ordering)
  -- Re-deliveries of identical data leave the row alone: no dead tuple, no WAL,
  -- and updated_at keeps meaning "last change".
  AND (r.value, r.unit, r.source_record_id, r.source, r.ordering)
      IS DISTINCT FROM
      (EXCLUDED.value, EXCLUDED.unit, EXCLUDED.source_record_id, EXCLUDED.source, EXCLUDED.ordering)
