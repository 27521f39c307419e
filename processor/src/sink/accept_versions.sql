-- Accepts document versions: newer wins per document, under the document row's lock.
-- Its own statement, before apply_versions.sql: that statement's snapshot is taken after
-- these locks are held, so it sees every row a concurrent writer of the same document
-- committed while this one waited (one statement would not: its snapshot predates the
-- wait, and rows the other writer inserted would survive as orphans).
--
-- $1..$5: one entry per document version (the caller sends at most one per document).
-- Returns the accepted documents, and which of them it created.
INSERT INTO reading_documents AS d (user_id, vendor, source_record_id, source, ordering)
SELECT *
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])
ON CONFLICT (user_id, vendor, source_record_id, source) DO UPDATE
SET ordering = EXCLUDED.ordering,
    updated_at = now()
-- NULL ordering means the vendor gave no recency: such a version counts as newest, and a
-- stored one without it is replaced by anything.
WHERE d.ordering IS NULL
   OR EXCLUDED.ordering IS NULL
   OR EXCLUDED.ordering >= d.ordering
RETURNING d.user_id, d.vendor, d.source_record_id, d.source,
          -- Whether the row was inserted (no stored version): PostgreSQL leaves xmax
          -- zero on an inserted row, and sets it on one ON CONFLICT updated (the lock).
          d.xmax = 0 AS created
