-- Account events; a replayed envelope carries the same event_id and is a no-op.
INSERT INTO account_events (event_id, vendor, kind, user_id, vendor_user_id, received_at)
SELECT *
FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
ON CONFLICT (event_id) DO NOTHING
