-- Takes the account's refresh lease if it is free (or expired) and returns the row as
-- it is now. One short statement: nothing stays locked while the vendor is called.
UPDATE linked_accounts SET
    refresh_lease_until = now() + make_interval(secs => $3),
    refresh_lease_owner = $4
WHERE vendor = $1 AND vendor_user_id = $2
  AND (refresh_lease_until IS NULL OR refresh_lease_until < now())
RETURNING vendor, vendor_user_id, user_id, access_token, refresh_token, expires_at, status, token_version
