-- The metric catalog and sessions (issue 11).
--
-- readings.activity: the session a reading belongs to, by type (a workout's sport, or
-- sleep), NULL outside a session. Nullable without a default, so adding it rewrites no
-- rows; existing rows read as "no session".
ALTER TABLE readings ADD COLUMN activity text NULL;

COMMENT ON COLUMN readings.activity IS
    'The session the reading belongs to, by type: a workout''s sport (running, cycling, '
    'strength_training, ..., other) or sleep; NULL outside a session. A session''s readings '
    'share source_record_id; its session row is metric workout_duration or sleep_session. '
    'The README lists the vocabulary.';

-- One row per canonical metric, kept equal to the processor's built-in catalog
-- (bridge-core/src/catalog.rs) by the processor at start-up, after migrations: agents join
-- readings to it for UCUM and LOINC codes, the kind (whether a metric may be summed) and
-- the plausible range. A metric the running code no longer knows keeps its row (old
-- readings may still name it).
CREATE TABLE metric_catalog (
    metric      text             PRIMARY KEY,
    unit        text             NOT NULL,
    ucum        text             NOT NULL,
    kind        text             NOT NULL
        CHECK (kind IN ('instant', 'interval', 'session', 'score', 'state')),
    min_value   double precision NOT NULL,
    max_value   double precision NOT NULL,
    loinc       text             NULL,
    loinc_note  text             NULL,
    description text             NOT NULL
);

COMMENT ON TABLE metric_catalog IS
    'Every canonical metric: unit (as readings.unit) and its UCUM code, kind (instant = a '
    'level, never summed; interval = an amount over [start_time, end_time), summable across '
    'non-overlapping intervals of one source; session = one row per workout or sleep; score '
    '= vendor scale; state = a coded state such as a sleep stage), the plausible range, and '
    'the LOINC code where one exists and is unambiguous (loinc_note says why not).';

-- Readings with their codes, for agents and FHIR projections.
CREATE VIEW readings_coded AS
SELECT r.*, c.ucum AS unit_ucum, c.loinc, c.kind
FROM readings AS r
LEFT JOIN metric_catalog AS c USING (metric);
