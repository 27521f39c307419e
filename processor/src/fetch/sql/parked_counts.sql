SELECT reason, count(*) FROM parked_notifications WHERE closed_at IS NULL GROUP BY reason
