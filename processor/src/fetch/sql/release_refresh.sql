-- Gives the refresh lease back (only our own).
UPDATE linked_accounts SET refresh_lease_until = NULL, refresh_lease_owner = NULL
WHERE vendor = $1 AND vendor_user_id = $2 AND refresh_lease_owner = $3
