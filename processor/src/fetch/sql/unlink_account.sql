DELETE FROM linked_accounts WHERE vendor = $1 AND vendor_user_id = $2
