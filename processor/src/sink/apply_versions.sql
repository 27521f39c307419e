-- Applies document versions: each accepted version replaces its document's readings as a
-- set, in this one statement. Fixed text whatever the batch size: one array per column.
--
-- $1..$5: one entry per document version (the caller sends at most one per document).
-- $6..$15: the versions' readings, each naming its document; no two with the same identity.
--
-- Returns every change made, for the changelog: upserted = true for an inserted or changed
-- row, false for a row removed because the new version no longer has it.
WITH doc AS (
    INSERT INTO reading_documents AS d (user_id, vendor, source_record_id, source, ordering)
    SELECT *
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])
    ON CONFLICT (user_id, vendor, source_record_id, source) DO UPDATE
    SET ordering = EXCLUDED.ordering,
        updated_at = now()
    -- Newer wins per document. NULL ordering means the vendor gave no recency: such a
    -- version counts as newest, and a stored one without it is replaced by anything.
    -- Under the row lock, so concurrent writers of one document serialise here.
    WHERE d.ordering IS NULL
       OR EXCLUDED.ordering IS NULL
       OR EXCLUDED.ordering >= d.ordering
    RETURNING d.user_id, d.vendor, d.source_record_id, d.source
),
new AS (
    SELECT n.*
    FROM UNNEST(
        $6::text[], $7::text[], $8::text[], $9::float8[], $10::text[],
        $11::timestamptz[], $12::timestamptz[], $13::text[], $14::text[], $15::int8[]
    ) AS n (user_id, vendor, metric, value, unit, start_time, end_time,
            source_record_id, source, ordering)
    JOIN doc
      ON doc.user_id = n.user_id
     AND doc.vendor = n.vendor
     AND doc.source_record_id = n.source_record_id
     AND doc.source IS NOT DISTINCT FROM n.source
),
gone AS (
    DELETE FROM readings AS r
    USING doc
    WHERE r.user_id = doc.user_id
      AND r.vendor = doc.vendor
      AND r.source_record_id = doc.source_record_id
      AND r.source IS NOT DISTINCT FROM doc.source
      AND NOT EXISTS (
          SELECT 1 FROM new n
          WHERE n.user_id = r.user_id
            AND n.vendor = r.vendor
            AND n.source_record_id = r.source_record_id
            AND n.source IS NOT DISTINCT FROM r.source
            AND n.metric = r.metric
            AND n.start_time = r.start_time
            AND n.end_time = r.end_time
      )
    RETURNING r.user_id, r.vendor, r.source_record_id, r.source, r.metric,
              r.start_time, r.end_time
),
put AS (
    INSERT INTO readings AS r (
        user_id, vendor, metric, value, unit, start_time, end_time,
        source_record_id, source, ordering
    )
    SELECT user_id, vendor, metric, value, unit, start_time, end_time,
           source_record_id, source, ordering
    FROM new
    ON CONFLICT ON CONSTRAINT readings_identity_key DO UPDATE
    SET value = EXCLUDED.value,
        unit = EXCLUDED.unit,
        ordering = EXCLUDED.ordering,
        updated_at = now()
    -- Re-deliveries of identical data leave the row alone: no dead tuple, no WAL, no
    -- changelog record, and updated_at keeps meaning "last change".
    WHERE (r.value, r.unit, r.ordering)
          IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.unit, EXCLUDED.ordering)
    RETURNING r.user_id, r.vendor, r.source_record_id, r.source, r.metric,
              r.start_time, r.end_time
)
SELECT false AS upserted, * FROM gone
UNION ALL
SELECT true AS upserted, * FROM put
