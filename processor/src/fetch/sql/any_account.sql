SELECT vendor, vendor_user_id, access_token FROM linked_accounts LIMIT 1
