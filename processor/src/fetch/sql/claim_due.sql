-- Claims due rows with a lease: pushing next_attempt_at forward hides them from other
-- replicas' workers without holding a transaction open during vendor calls. A worker
-- that dies leaves the row to be taken again when the lease ends.
UPDATE parked_notifications p SET
    next_attempt_at = now() + $2::float8 * interval '1 millisecond',
    attempts = p.attempts + 1
WHERE p.event_id IN (
    SELECT event_id FROM parked_notifications
    WHERE closed_at IS NULL AND next_attempt_at <= now()
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING p.event_id, p.vendor, p.body, p.headers, p.received_at, p.raw_partition, p.raw_offset,
          p.attempts
