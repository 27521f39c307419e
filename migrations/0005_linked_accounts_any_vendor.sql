-- Vendors are listed in code (bridge_core::Vendor and the vendors crate's registry), not
-- in the schema: a new fetched vendor must not need a migration, and a row whose vendor
-- the code does not know is refused when read (AccountError::UnknownVendor), never
-- guessed. The column keeps the route-name shape.
ALTER TABLE linked_accounts DROP CONSTRAINT linked_accounts_vendor_known;
ALTER TABLE linked_accounts
    ADD CONSTRAINT linked_accounts_vendor_route CHECK (vendor ~ '^[a-z0-9_-]{1,32}$');
