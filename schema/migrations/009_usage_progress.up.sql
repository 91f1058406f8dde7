-- How far metering has got: each collector's per-minute watermark (a new
-- leader continues from it), the minutes it could not sample exactly, which
-- hours are closed for billing, and the (hour, namespace) pairs that late
-- data touched after their hour closed.

-- through: every minute before it has been sampled; since: the first
-- minute the source ever sampled.
CREATE TABLE usage_watermarks (
    source     text        PRIMARY KEY,
    since      timestamptz NOT NULL,
    through    timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CHECK (since <= through)
);

-- Minutes [start_minute, end_minute) that a source could not sample
-- exactly, and why. The samples it did write for them are lower bounds.
CREATE TABLE usage_gaps (
    source       text        NOT NULL,
    start_minute timestamptz NOT NULL,
    end_minute   timestamptz NOT NULL,
    reason       text        NOT NULL,
    recorded_at  timestamptz NOT NULL,
    PRIMARY KEY (source, start_minute, reason),
    CHECK (start_minute < end_minute)
);
CREATE INDEX usage_gaps_end_idx ON usage_gaps (end_minute);

-- One row: every hour before closed_through has its revision 0 rollup.
CREATE TABLE usage_rollup_state (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    closed_through timestamptz
);
INSERT INTO usage_rollup_state (id, closed_through) VALUES (true, NULL);

-- Work queue of corrections: written with the late minute rows, consumed by
-- the rollup.
CREATE TABLE usage_dirty_hours (
    hour         timestamptz NOT NULL,
    namespace_id bigint      NOT NULL,
    PRIMARY KEY (hour, namespace_id)
);
