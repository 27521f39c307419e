SELECT vendor, vendor_user_id, user_id, access_token, refresh_token, expires_at, status, token_version
FROM linked_accounts
WHERE vendor = $1 AND vendor_user_id = $2
