-- Usage: integer quantities per namespace, resource, class and minute, as
-- the collectors and the ingest API record them, and the hourly rollups that
-- billing reads. Minute rows live in daily partitions that are dropped by
-- retention (never deleted row by row); rollups in monthly partitions kept
-- for years. Partitions are created ahead of time by usage_ensure_partitions.

-- One row per sample (source = 'compute', 'storage'; key = '') or per
-- ingested event (source = the meter; key = its idempotency key). Rows are
-- never updated: a second write of the same key is ignored.
CREATE TABLE usage_minute (
    namespace_id bigint      NOT NULL,
    minute       timestamptz NOT NULL,
    resource     text        NOT NULL,
    class        text        NOT NULL,
    source       text        NOT NULL,
    key          text        NOT NULL,
    quantity     bigint      NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (namespace_id, minute, resource, class, source, key)
) PARTITION BY RANGE (minute);
-- Rows arrive in about minute order, so a BRIN index finds an hour's rows
-- for the rollup at a tiny fraction of a b-tree's size.
CREATE INDEX usage_minute_minute_brin ON usage_minute USING brin (minute);

-- Hourly totals. Revision 0 is written when the hour closes; a later
-- revision is a correction (the difference) from data that arrived late,
-- inside the accepted window. seq orders rows by commit, so billing can
-- read every row once by remembering the last seq it read.
CREATE SEQUENCE usage_hourly_seq AS bigint;
CREATE TABLE usage_hourly (
    namespace_id bigint      NOT NULL,
    hour         timestamptz NOT NULL,
    resource     text        NOT NULL,
    class        text        NOT NULL,
    revision     integer     NOT NULL CHECK (revision >= 0),
    quantity     bigint      NOT NULL,
    seq          bigint      NOT NULL,
    rolled_at    timestamptz NOT NULL,
    PRIMARY KEY (namespace_id, hour, resource, class, revision)
) PARTITION BY RANGE (hour);
CREATE INDEX usage_hourly_seq_idx ON usage_hourly (seq);

-- Creates the daily minute partitions and the monthly hourly partitions
-- that cover [p_from, p_to), UTC days, unless they exist. Returns how many
-- it created. Serialised by an advisory lock, so replicas may call it at
-- once.
CREATE FUNCTION usage_ensure_partitions(p_from date, p_to date) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d       date := p_from;
    m       date;
    created integer := 0;
    part    text;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('usage_partitions'));
    WHILE d < p_to LOOP
        part := 'usage_minute_p' || to_char(d, 'YYYYMMDD');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF usage_minute FOR VALUES FROM (%L) TO (%L)',
                part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        m := date_trunc('month', d)::date;
        part := 'usage_hourly_p' || to_char(m, 'YYYYMM');
        IF to_regclass(part) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF usage_hourly FOR VALUES FROM (%L) TO (%L)',
                part, m::timestamp AT TIME ZONE 'UTC', (m + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            created := created + 1;
        END IF;
        d := d + 1;
    END LOOP;
    RETURN created;
END
$$;

-- Drops the daily minute partitions that end on or before p_before and
-- returns their names. Rollups are not touched.
CREATE FUNCTION usage_drop_minute_partitions(p_before date) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('usage_partitions'));
    FOR r IN
        SELECT c.relname
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'usage_minute'::regclass
          AND c.relname ~ '^usage_minute_p[0-9]{8}$'
          AND to_date(substr(c.relname, 15), 'YYYYMMDD') < p_before
        ORDER BY c.relname
    LOOP
        EXECUTE format('DROP TABLE %I', r.relname);
        RETURN NEXT r.relname;
    END LOOP;
END
$$;
