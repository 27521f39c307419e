-- Canonical readings and account events: the tables agents and operators query.
--
-- The processor applies this at start (sqlx migrate, under an advisory lock, so
-- several processors may start at once). Never edit an applied migration: sqlx
-- checksums it and refuses to start; add 0002_… instead.

CREATE TABLE readings (
    user_id          text             NOT NULL,
    vendor           text             NOT NULL,
    metric           text             NOT NULL,
    value            double precision NOT NULL,
    unit             text             NOT NULL,
    start_time       timestamptz      NOT NULL,
    end_time         timestamptz      NOT NULL,
    source_record_id text             NOT NULL,
    source           text             NULL,
    ordering         bigint           NULL,
    ingested_at      timestamptz      NOT NULL DEFAULT now(),
    updated_at       timestamptz      NOT NULL DEFAULT now(),

    -- One row per measure: a vendor re-sending (or revising) a measure replaces it.
    CONSTRAINT readings_pkey
        PRIMARY KEY (user_id, vendor, metric, start_time, end_time),
    CONSTRAINT readings_interval_ordered
        CHECK (end_time >= start_time),
    -- PostgreSQL's float8 accepts NaN and ±Infinity; agents doing arithmetic must
    -- never see them, whichever writer (processor, COPY, backfill) slipped.
    CONSTRAINT readings_value_finite
        CHECK (value <> 'NaN'::float8
               AND value <> 'Infinity'::float8
               AND value <> '-Infinity'::float8)
);

-- Vendor deletions name the vendor's document, not our key.
CREATE INDEX readings_vendor_record_idx ON readings (vendor, source_record_id);

-- Agents ask "metric M of user U over a time range", across vendors.
CREATE INDEX readings_user_metric_time_idx ON readings (user_id, metric, start_time);

COMMENT ON TABLE readings IS
    'Canonical biometric readings, one row per (user_id, vendor, metric, start_time, end_time). '
    'Written by the processor with an idempotent upsert; a vendor deletion removes every row of '
    'its source record. Values of different vendors are never merged: compare them, do not sum them.';
COMMENT ON COLUMN readings.user_id IS
    'Our user id (see the README for how each vendor''s user is mapped).';
COMMENT ON COLUMN readings.vendor IS
    'Vendor the data came through: terra, healthkit, oura, whoop, … (not the device; see source).';
COMMENT ON COLUMN readings.metric IS
    'Canonical metric name (heart_rate, hrv_rmssd, sleep_total, …). Each metric has exactly one '
    'unit; the list is processor/src/model.rs (Metric::as_str / Metric::unit).';
COMMENT ON COLUMN readings.value IS
    'Value in the metric''s unit; always finite. Scores (unit score) are vendor-specific and not '
    'comparable across vendors.';
COMMENT ON COLUMN readings.unit IS
    'The metric''s unit, repeated on every row so a row reads on its own (bpm, ms, s, kcal, m, kg, '
    '%, degC, count, breaths/min, mL/kg/min, score). Determined by metric, never by the vendor.';
COMMENT ON COLUMN readings.start_time IS
    'Start of the measured interval, or the instant of a point measure.';
COMMENT ON COLUMN readings.end_time IS
    'End of the measured interval; equals start_time for point measures.';
COMMENT ON COLUMN readings.source_record_id IS
    'The vendor''s id of the document the reading came from (summary, sleep, workout id). '
    'Vendor deletions are matched on (vendor, source_record_id, user_id).';
COMMENT ON COLUMN readings.source IS
    'Device or app that produced the reading, when the vendor says (e.g. OURA via Terra, Apple Watch).';
COMMENT ON COLUMN readings.ordering IS
    'Vendor recency of the document (Terra x-terra-ordering-timestamp, ms). A row is replaced only '
    'by a reading whose ordering is at least as high. NULL means the vendor gave no recency: such '
    'a reading replaces any row, and a NULL row is replaced by any reading.';
COMMENT ON COLUMN readings.ingested_at IS
    'When the row was first inserted; kept across updates.';
COMMENT ON COLUMN readings.updated_at IS
    'When the row last changed; re-deliveries of identical data do not touch it.';

CREATE TABLE account_events (
    id             bigserial   PRIMARY KEY,
    -- A re-delivered or replayed envelope must not add a second row.
    event_id       text        NOT NULL,
    vendor         text        NOT NULL,
    kind           text        NOT NULL,
    user_id        text        NULL,
    vendor_user_id text        NULL,
    received_at    timestamptz NOT NULL,
    CONSTRAINT account_events_event_id_key UNIQUE (event_id)
);

COMMENT ON TABLE account_events IS
    'Vendor account events (connect, disconnect, re-auth, …) for operators. They carry no readings.';
COMMENT ON COLUMN account_events.event_id IS
    'Id of the raw envelope the event came in (assigned by the edge), so replays do not duplicate. '
    'The n-th further event of the same envelope (n >= 1) is stored as <event_id>/<n>.';
COMMENT ON COLUMN account_events.kind IS
    'Event kind as the vendor names it (auth, deauth, user_reauth, …).';
COMMENT ON COLUMN account_events.user_id IS
    'Our user id, when the vendor event identifies one.';
COMMENT ON COLUMN account_events.vendor_user_id IS
    'The vendor''s user id, when given.';
COMMENT ON COLUMN account_events.received_at IS
    'When the edge received the webhook.';
