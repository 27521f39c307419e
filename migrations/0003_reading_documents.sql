-- Readings belong to a source document (issue 9).
--
-- A reading is identified by its document, (user_id, vendor, source_record_id, source),
-- plus (metric, start_time, end_time). `source` (the provider or device: Terra's
-- user.provider, the Health Auto Export sample's source) is part of the identity, so two
-- devices of one user never share a row. A new version of a document replaces the
-- document's readings as a set; reading_documents holds each document's current
-- ordering so that an older version can never remove or overwrite a newer one's rows.
--
-- Existing rows are kept: the new key is the old key plus (source_record_id, source),
-- so rows unique under the old key stay unique. Orphans an earlier revision left behind
-- (two intervals of one document) stay until that document's next version replaces them.

ALTER TABLE readings DROP CONSTRAINT readings_pkey;

-- NULLS NOT DISTINCT: a NULL source (the vendor names no provider) is one value, not a
-- fresh one per row, so re-deliveries still collide.
ALTER TABLE readings
    ADD CONSTRAINT readings_identity_key
    UNIQUE NULLS NOT DISTINCT
        (user_id, vendor, source_record_id, source, metric, start_time, end_time);

-- Superseded by the identity key's (user_id, vendor, source_record_id) prefix.
DROP INDEX readings_vendor_record_idx;

CREATE TABLE reading_documents (
    user_id          text        NOT NULL,
    vendor           text        NOT NULL,
    source_record_id text        NOT NULL,
    source           text        NULL,
    ordering         bigint      NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT reading_documents_key
        UNIQUE NULLS NOT DISTINCT (user_id, vendor, source_record_id, source)
);

-- Terra sleep/activity summaries without summary_id were keyed "<start>/<end>" as written;
-- they are now "<type>:<start>", so the next version of a still-syncing night (later end)
-- replaces its rows. Only rows of that exact shape are renamed; their metric tells the
-- type (workout_duration is only emitted for activities).
UPDATE readings AS r
SET source_record_id = d.kind || ':' || split_part(r.source_record_id, '/', 1)
FROM (
    SELECT user_id, source_record_id, source,
           CASE WHEN bool_or(metric = 'workout_duration') THEN 'activity' ELSE 'sleep' END AS kind
    FROM readings
    WHERE vendor = 'terra'
      AND source_record_id ~ '^\d{4}-\d\d-\d\dT[^/]+/\d{4}-\d\d-\d\dT[^/]+$'
    GROUP BY user_id, source_record_id, source
) AS d
WHERE r.vendor = 'terra'
  AND r.user_id = d.user_id
  AND r.source_record_id = d.source_record_id
  AND r.source IS NOT DISTINCT FROM d.source;

-- Every document the old code wrote, at the highest ordering any of its rows carries
-- (NULL when none does: the old rule treats such rows as replaceable by anything).
INSERT INTO reading_documents (user_id, vendor, source_record_id, source, ordering)
SELECT user_id, vendor, source_record_id, source, max(ordering)
FROM readings
GROUP BY user_id, vendor, source_record_id, source;

COMMENT ON TABLE readings IS
    'Canonical biometric readings. One row per (user_id, vendor, source_record_id, source, '
    'metric, start_time, end_time): a reading belongs to one vendor document of one provider. '
    'A new version of a document replaces all of that document''s rows in one transaction; a '
    'vendor deletion removes every row of the document. Values of different vendors or '
    'sources are never merged: compare them, do not sum them across sources.';
COMMENT ON COLUMN readings.source_record_id IS
    'The vendor''s id of the document the reading came from (summary, sleep, workout id, or '
    'a stable id the processor derives; see the README). Part of the reading''s identity.';
COMMENT ON COLUMN readings.source IS
    'Provider or device that produced the reading, when the vendor says (Terra user.provider '
    'such as GARMIN or OURA; the Health Auto Export sample source). Part of the identity: '
    'filter on it to get one row per device. NULL when the vendor is the only source.';
COMMENT ON COLUMN readings.ordering IS
    'Vendor recency of the document version the row belongs to (Terra '
    'x-terra-ordering-timestamp, ms), the same on every row of the document. NULL means the '
    'vendor gave no recency. See reading_documents for the newer-wins rule.';

COMMENT ON TABLE reading_documents IS
    'The current version of each source document that readings were written from. A new '
    'version replaces the document''s rows only when its ordering is at least the stored one, '
    'or when either ordering is NULL. A vendor deletion removes the document row too.';
COMMENT ON COLUMN reading_documents.ordering IS
    'Ordering of the version whose readings are in the table; NULL when the vendor gave none.';
COMMENT ON COLUMN reading_documents.updated_at IS
    'When a version of the document was last accepted.';
