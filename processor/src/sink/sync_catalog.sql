-- Makes metric_catalog hold the running build's catalog: one array per column.
-- Rows are only rewritten when they differ, so a restart with the same build writes nothing.
INSERT INTO metric_catalog AS c (
    metric, unit, ucum, kind, min_value, max_value, loinc, loinc_note, description
)
SELECT *
FROM UNNEST(
    $1::text[], $2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[],
    $7::text[], $8::text[], $9::text[]
)
ON CONFLICT (metric) DO UPDATE
SET unit = EXCLUDED.unit,
    ucum = EXCLUDED.ucum,
    kind = EXCLUDED.kind,
    min_value = EXCLUDED.min_value,
    max_value = EXCLUDED.max_value,
    loinc = EXCLUDED.loinc,
    loinc_note = EXCLUDED.loinc_note,
    description = EXCLUDED.description
WHERE (c.unit, c.ucum, c.kind, c.min_value, c.max_value, c.loinc, c.loinc_note, c.description)
      IS DISTINCT FROM
      (EXCLUDED.unit, EXCLUDED.ucum, EXCLUDED.kind, EXCLUDED.min_value, EXCLUDED.max_value,
       EXCLUDED.loinc, EXCLUDED.loinc_note, EXCLUDED.description)
