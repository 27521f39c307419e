-- Token refreshes hold a lease on the account row instead of a row lock: the lease is
-- taken and released in short statements, so no connection or lock is held while the
-- vendor's token endpoint is called (a slow endpoint must not starve the pool).
ALTER TABLE linked_accounts
    ADD COLUMN refresh_lease_until timestamptz NULL,
    ADD COLUMN refresh_lease_owner uuid        NULL;

COMMENT ON COLUMN linked_accounts.refresh_lease_until IS
    'While in the future, one processor (refresh_lease_owner) is refreshing this account''s '
    'tokens; others wait for the new token_version. Expired leases are free.';
