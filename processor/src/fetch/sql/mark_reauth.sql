UPDATE linked_accounts SET status = 'reauth_required', updated_at = now()
WHERE vendor = $1 AND vendor_user_id = $2 AND token_version = $3
