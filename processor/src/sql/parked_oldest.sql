SELECT reason, extract(epoch FROM now() - min(parked_at))::float8 AS age_seconds
FROM parked_notifications
WHERE closed_at IS NULL
GROUP BY reason
