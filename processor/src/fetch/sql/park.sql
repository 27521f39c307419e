-- A replayed envelope parks once; an already parked one keeps its row.
INSERT INTO parked_notifications
    (event_id, vendor, vendor_user_id, body, headers, received_at, raw_partition, raw_offset,
     reason, detail, next_attempt_at, closed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, now() + $11::float8 * interval '1 millisecond',
        CASE WHEN $12::bool THEN now() END)
ON CONFLICT (event_id) DO NOTHING
