-- Plain bulk load, no conflict handling: the readings of documents accept_versions.sql
-- has just created (no row can exist for them; a unique violation sends the pass the
-- general way), and the benchmark's ceiling baseline.
COPY readings (
    user_id, vendor, metric, value, unit, start_time, end_time,
    source_record_id, source, ordering, activity
) FROM STDIN (FORMAT csv)
