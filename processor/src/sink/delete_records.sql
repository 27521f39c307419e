-- Vendor deletions: every reading of each named (user, vendor, document) goes, whatever
-- its source, and so does the document's version row, so a re-created document is
-- accepted whatever its ordering. user_id is part of the match so one user's deletion
-- can never touch another's rows. Returns the removed readings' identities.
WITH t AS (
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t (user_id, vendor, source_record_id)
),
docs AS (
    DELETE FROM reading_documents AS d
    USING t
    WHERE d.vendor = t.vendor
      AND d.source_record_id = t.source_record_id
      AND d.user_id = t.user_id
)
DELETE FROM readings AS r
USING t
WHERE r.vendor = t.vendor
  AND r.source_record_id = t.source_record_id
  AND r.user_id = t.user_id
RETURNING r.user_id, r.vendor, r.source_record_id, r.source, r.metric,
          r.start_time, r.end_time
