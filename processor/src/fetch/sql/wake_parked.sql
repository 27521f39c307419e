-- The account was (re)linked: its parked notifications are due now.
UPDATE parked_notifications SET next_attempt_at = now()
WHERE vendor = $1 AND vendor_user_id = $2 AND closed_at IS NULL
