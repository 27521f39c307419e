-- Removes what a benchmark run inserted ($1: LIKE pattern of the run's user-id prefix).
DELETE FROM readings WHERE user_id LIKE $1
