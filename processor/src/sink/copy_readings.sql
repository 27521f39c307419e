-- Plain bulk load, no conflict handling: the benchmark's ceiling baseline.
COPY readings (
    user_id, vendor, metric, value, unit, start_time, end_time,
    source_record_id, source, ordering, activity
) FROM STDIN (FORMAT csv)
