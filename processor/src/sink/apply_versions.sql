-- Applies accepted document versions (accept_versions.sql took their locks): each
-- replaces its document's readings as a set, in this one statement. Fixed text whatever
-- the batch size: one array per column.
--
-- $1..$4: the accepted documents that had a stored version (only they can have stale
-- rows). $5..$14: the readings of those documents, each naming its document; no two with
-- the same identity. $15: per reading, its session's activity. Readings of documents
-- accept_versions.sql created are not sent here: no row can exist for them, and the
-- caller bulk-loads them with copy_readings.sql in the same transaction.
--
-- Returns every change made, for the changelog: upserted = true for an inserted or
-- changed row, false for a row removed because the new version no longer has it.
WITH new AS (
    SELECT *
    FROM UNNEST(
        $5::text[], $6::text[], $7::text[], $8::float8[], $9::text[],
        $10::timestamptz[], $11::timestamptz[], $12::text[], $13::text[], $14::int8[],
        $15::text[]
    ) AS n (user_id, vendor, metric, value, unit, start_time, end_time,
            source_record_id, source, ordering, activity)
),
-- Stored rows the new versions no longer have. One index probe per document on the
-- identity key's prefix: the LATERAL with OFFSET 0 keeps the planner from turning this
-- into a hash join over the whole table, which it prefers for a thousand documents while
-- the table is small and which costs a full scan once it is not.
stale AS (
    SELECT old.tid
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[])
         AS doc (user_id, vendor, source_record_id, source)
    CROSS JOIN LATERAL (
        SELECT r.ctid AS tid, r.metric, r.start_time, r.end_time
        FROM readings AS r
        WHERE r.user_id = doc.user_id
          AND r.vendor = doc.vendor
          AND r.source_record_id = doc.source_record_id
          AND r.source IS NOT DISTINCT FROM doc.source
        OFFSET 0
    ) AS old
    WHERE NOT EXISTS (
        SELECT 1 FROM new AS n
        WHERE n.user_id = doc.user_id
          AND n.vendor = doc.vendor
          AND n.source_record_id = doc.source_record_id
          AND n.source IS NOT DISTINCT FROM doc.source
          AND n.metric = old.metric
          AND n.start_time = old.start_time
          AND n.end_time = old.end_time
    )
),
-- By ctid: a TID scan, whatever the statistics. The documents' locks keep every other
-- writer of these rows out, so a ctid read here still names the row when it is deleted.
gone AS (
    DELETE FROM readings AS r
    WHERE r.ctid = ANY (ARRAY(SELECT tid FROM stale))
    RETURNING r.user_id, r.vendor, r.source_record_id, r.source, r.metric,
              r.start_time, r.end_time
),
put AS (
    INSERT INTO readings AS r (
        user_id, vendor, metric, value, unit, start_time, end_time,
        source_record_id, source, ordering, activity
    )
    SELECT user_id, vendor, metric, value, unit, start_time, end_time,
           source_record_id, source, ordering, activity
    FROM new
    ON CONFLICT ON CONSTRAINT readings_identity_key DO UPDATE
    SET value = EXCLUDED.value,
        unit = EXCLUDED.unit,
        ordering = EXCLUDED.ordering,
        activity = EXCLUDED.activity,
        updated_at = now()
    -- Re-deliveries of identical data leave the row alone: no dead tuple, no WAL, no
    -- changelog record, and updated_at keeps meaning "last change".
    WHERE (r.value, r.unit, r.ordering, r.activity)
          IS DISTINCT FROM (EXCLUDED.value, EXCLUDED.unit, EXCLUDED.ordering, EXCLUDED.activity)
    RETURNING r.user_id, r.vendor, r.source_record_id, r.source, r.metric,
              r.start_time, r.end_time
)
SELECT false AS upserted, * FROM gone
UNION ALL
SELECT true AS upserted, * FROM put
