INSERT INTO linked_accounts
    (vendor, vendor_user_id, user_id, access_token, refresh_token, expires_at, scopes)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (vendor, vendor_user_id) DO UPDATE SET
    user_id       = EXCLUDED.user_id,
    access_token  = EXCLUDED.access_token,
    refresh_token = EXCLUDED.refresh_token,
    expires_at    = EXCLUDED.expires_at,
    scopes        = EXCLUDED.scopes,
    status        = 'active',
    token_version = linked_accounts.token_version + 1,
    updated_at    = now()
