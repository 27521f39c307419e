-- The new pair replaces the old in one statement, and only if nobody changed the row
-- since it was read (token_version), so a pair is never half-written or lost. Releases
-- the refresh lease.
UPDATE linked_accounts SET
    access_token  = $3,
    refresh_token = $4,
    expires_at    = $5,
    scopes        = COALESCE($6, scopes),
    status        = 'active',
    token_version = token_version + 1,
    refresh_lease_until = NULL,
    refresh_lease_owner = NULL,
    updated_at    = now()
WHERE vendor = $1 AND vendor_user_id = $2 AND token_version = $7
RETURNING token_version
