-- Removes what a benchmark run inserted ($1: LIKE pattern of the run's user-id prefix),
-- readings and their documents' version rows.
WITH documents AS (
    DELETE FROM reading_documents WHERE user_id LIKE $1
)
DELETE FROM readings WHERE user_id LIKE $1
