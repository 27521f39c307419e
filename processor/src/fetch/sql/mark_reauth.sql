UPDATE linked_accounts SET status = 'reauth_required', updated_at = now(),
    refresh_lease_until = NULL, refresh_lease_owner = NULL
WHERE vendor = $1 AND vendor_user_id = $2 AND token_version = $3
