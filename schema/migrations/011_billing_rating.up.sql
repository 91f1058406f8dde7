-- Prices and rating: versioned price books, their prices (unit or
-- graduated tiers per org per month), the plans that bind a book and a
-- quota, and the charge lines that rating writes, one per rated usage
-- rollup row, each posted to the ledger in the same transaction.

-- A price book holds the prices of one currency. Orgs reach it through
-- their plan.
CREATE TABLE price_books (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text        NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
    currency   text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- A version is a draft (effective_from NULL) until it is published with
-- the time from which it prices usage. The version in force for an hour is
-- the published one with the latest effective_from at or before it.
-- Published versions never change, and a version may only be published to
-- take effect after its publication, so a new version never changes what
-- was charged.
CREATE TABLE price_book_versions (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    price_book_id  bigint      NOT NULL REFERENCES price_books (id),
    note           text        NOT NULL DEFAULT '',
    effective_from timestamptz,
    published_at   timestamptz,
    created_at     timestamptz NOT NULL,
    CHECK ((effective_from IS NULL) = (published_at IS NULL))
);
CREATE UNIQUE INDEX price_book_versions_effective_key ON price_book_versions (price_book_id, effective_from)
    WHERE effective_from IS NOT NULL;

-- One price per resource and class in a version. unit_divisor is how many
-- usage units make one priced unit (60,000 millicore-minutes per
-- core-hour, 61,440 MiB-minutes per GiB-hour, 60 device-minutes per
-- device-hour, 2^30 bytes per GiB). Class '' prices every class of the
-- resource that has no price of its own.
CREATE TABLE prices (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version_id   bigint NOT NULL REFERENCES price_book_versions (id) ON DELETE CASCADE,
    resource     text   NOT NULL CHECK (resource ~ '^[a-z][a-z0-9_.-]{0,62}$'),
    class        text   NOT NULL DEFAULT '',
    mode         text   NOT NULL CHECK (mode IN ('unit', 'graduated')),
    unit_divisor bigint NOT NULL CHECK (unit_divisor > 0),
    UNIQUE (version_id, resource, class)
);

-- The tiers of a price, in order: usage of an org in a month up to
-- up_to_units priced units (NULL: without end) costs unit_price_micros per
-- priced unit. A unit price has one tier without end.
CREATE TABLE price_tiers (
    price_id          bigint NOT NULL REFERENCES prices (id) ON DELETE CASCADE,
    idx               int    NOT NULL CHECK (idx >= 0),
    up_to_units       bigint CHECK (up_to_units > 0),
    unit_price_micros bigint NOT NULL CHECK (unit_price_micros >= 0),
    PRIMARY KEY (price_id, idx)
);

-- Prices of a published version are frozen.
CREATE FUNCTION prices_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v bigint;
BEGIN
    IF TG_TABLE_NAME = 'prices' THEN
        v := CASE WHEN TG_OP = 'DELETE' THEN OLD.version_id ELSE NEW.version_id END;
    ELSE
        SELECT p.version_id INTO v FROM prices p
        WHERE p.id = CASE WHEN TG_OP = 'DELETE' THEN OLD.price_id ELSE NEW.price_id END;
    END IF;
    IF EXISTS (SELECT 1 FROM price_book_versions WHERE id = v AND published_at IS NOT NULL) THEN
        RAISE EXCEPTION 'prices of a published price book version cannot change' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER prices_frozen BEFORE INSERT OR UPDATE OR DELETE ON prices
    FOR EACH ROW EXECUTE FUNCTION prices_frozen();
CREATE TRIGGER price_tiers_frozen BEFORE INSERT OR UPDATE OR DELETE ON price_tiers
    FOR EACH ROW EXECUTE FUNCTION prices_frozen();

CREATE FUNCTION price_book_versions_frozen() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND OLD.published_at IS NOT NULL
       OR TG_OP = 'UPDATE' AND OLD.published_at IS NOT NULL AND (NEW IS DISTINCT FROM OLD) THEN
        RAISE EXCEPTION 'a published price book version cannot change' USING ERRCODE = 'restrict_violation';
    END IF;
    RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
END
$$;
CREATE TRIGGER price_book_versions_frozen BEFORE UPDATE OR DELETE ON price_book_versions
    FOR EACH ROW EXECUTE FUNCTION price_book_versions_frozen();

-- A plan binds a price book, a billing mode and a quota. orgs.plan names
-- one.
CREATE TABLE plans (
    name           text        PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9-]{0,62}$'),
    display_name   text        NOT NULL DEFAULT '',
    billing_mode   text        NOT NULL CHECK (billing_mode IN ('prepaid', 'postpaid')),
    price_book_id  bigint      NOT NULL REFERENCES price_books (id),
    cpu_millicores bigint      NOT NULL DEFAULT 0 CHECK (cpu_millicores >= 0),
    memory_mib     bigint      NOT NULL DEFAULT 0 CHECK (memory_mib >= 0),
    storage_mib    bigint      NOT NULL DEFAULT 0 CHECK (storage_mib >= 0),
    gpus           bigint      NOT NULL DEFAULT 0 CHECK (gpus >= 0),
    pods           bigint      NOT NULL DEFAULT 0 CHECK (pods >= 0),
    namespaces     bigint      NOT NULL DEFAULT 0 CHECK (namespaces >= 0),
    created_at     timestamptz NOT NULL,
    updated_at     timestamptz NOT NULL
);

INSERT INTO price_books (name, currency, created_at, updated_at)
VALUES ('default', 'USD', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z');
INSERT INTO price_book_versions (price_book_id, note, effective_from, published_at, created_at)
SELECT id, 'initial: no prices, everything free', '1970-01-01T00:00:00Z', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'
FROM price_books WHERE name = 'default';
INSERT INTO plans (name, display_name, billing_mode, price_book_id, cpu_millicores, memory_mib, storage_mib,
    gpus, pods, namespaces, created_at, updated_at)
SELECT 'free', 'Free', 'prepaid', id, 2000, 4096, 10240, 0, 20, 1, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z'
FROM price_books WHERE name = 'default';

ALTER TABLE orgs ADD CONSTRAINT orgs_plan_fkey FOREIGN KEY (plan) REFERENCES plans (name);

-- One line per rated usage rollup row (namespace, resource, class, hour,
-- revision): revision 0 rates an hour's total, a higher revision a
-- correction from late usage. key is deterministic, so a line is written
-- once whoever rates it and however often. amount_micros is signed
-- (positive: the org owes it); unit_price_micros and unit_divisor are the
-- price it came from (for graduated prices, the tier the line ended in),
-- tier_start the org's usage in the month before the line.
CREATE TABLE charge_lines (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key                   text        NOT NULL UNIQUE,
    org_id                bigint      NOT NULL REFERENCES orgs (id),
    namespace_id          bigint      NOT NULL,
    resource              text        NOT NULL,
    class                 text        NOT NULL,
    hour                  timestamptz NOT NULL,
    revision              int         NOT NULL CHECK (revision >= 0),
    quantity              bigint      NOT NULL,
    amount_micros         bigint      NOT NULL,
    currency              text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    price_book_version_id bigint      REFERENCES price_book_versions (id),
    ledger_reference      text,
    rated_at              timestamptz NOT NULL,
    price_id              bigint      REFERENCES prices (id),
    unit_price_micros     bigint      NOT NULL DEFAULT 0,
    unit_divisor          bigint      NOT NULL DEFAULT 1 CHECK (unit_divisor > 0),
    tier_start            bigint      NOT NULL DEFAULT 0,
    usage_seq             bigint      NOT NULL
);
CREATE INDEX charge_lines_org_hour_idx ON charge_lines (org_id, hour);
CREATE INDEX charge_lines_namespace_hour_idx ON charge_lines (namespace_id, hour);

-- How far rating has read usage_hourly: every row with seq at or below
-- last_seq is rated.
CREATE TABLE rating_state (
    id         boolean     PRIMARY KEY DEFAULT true CHECK (id),
    last_seq   bigint      NOT NULL DEFAULT 0,
    rated_at   timestamptz
);
INSERT INTO rating_state (id, last_seq) VALUES (true, 0);
