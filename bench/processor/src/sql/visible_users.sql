-- Latency poll: of the webhooks still awaited ($1: their user ids, one user per
-- webhook), which have rows visible now, how many, and the transaction start time
-- (ingested_at = now() of the processor's upsert) of the first.
SELECT user_id, count(*) AS rows, min(ingested_at) AS ingested_at
FROM readings
WHERE user_id = ANY($1)
GROUP BY user_id
