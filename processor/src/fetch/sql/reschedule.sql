UPDATE parked_notifications SET
    reason = $2,
    detail = $3,
    next_attempt_at = now() + $4::float8 * interval '1 millisecond',
    closed_at = CASE WHEN $5::bool THEN now() END
WHERE event_id = $1
