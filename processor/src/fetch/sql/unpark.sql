DELETE FROM parked_notifications WHERE event_id = $1
