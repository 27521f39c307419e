-- Serialises refreshes of one account across replicas: the lock is held while the token
-- endpoint is called, because refresh tokens rotate and two refreshes would race.
SELECT vendor, vendor_user_id, user_id, access_token, refresh_token, expires_at, status, token_version
FROM linked_accounts
WHERE vendor = $1 AND vendor_user_id = $2
FOR UPDATE
