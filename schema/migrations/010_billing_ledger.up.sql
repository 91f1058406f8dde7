-- The money of each org: an append-only ledger of signed int64 micro-unit
-- entries, the credit grants that some entries create and others consume,
-- and one balance row per org kept equal to the sum of its entries in the
-- same transaction as every entry.

-- One row per org that has ever had an entry. cash_micros is the sum of its
-- cash entries, credit_micros the sum of its credit entries (equal to the
-- sum of remaining_micros over its grants).
CREATE TABLE billing_accounts (
    org_id        bigint      PRIMARY KEY REFERENCES orgs (id),
    currency      text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    cash_micros   bigint      NOT NULL DEFAULT 0,
    credit_micros bigint      NOT NULL DEFAULT 0 CHECK (credit_micros >= 0),
    entry_count   bigint      NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Prepaid credit that is not cash: granted by an admin, a promotion or a
-- redeemed gift code; used before cash, earliest expiry first; what is left
-- at expiry is written off by a credit_expiry entry.
CREATE TABLE credit_grants (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id           bigint      NOT NULL REFERENCES orgs (id),
    source           text        NOT NULL CHECK (source IN ('credit', 'gift_code')),
    amount_micros    bigint      NOT NULL CHECK (amount_micros > 0),
    remaining_micros bigint      NOT NULL CHECK (remaining_micros >= 0 AND remaining_micros <= amount_micros),
    expires_at       timestamptz,
    reference        text        NOT NULL UNIQUE,
    created_at       timestamptz NOT NULL
);
CREATE INDEX credit_grants_usable_idx ON credit_grants (org_id, expires_at, id) WHERE remaining_micros > 0;

-- Every change of a balance. A posting of one reference may take several
-- parts (a charge paid partly from each of two grants and partly from
-- cash); (reference, part) is unique, so a retried posting is seen and
-- ignored. Rows are never updated or deleted.
CREATE TABLE ledger_entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          bigint      NOT NULL REFERENCES orgs (id),
    kind            text        NOT NULL CHECK (kind IN ('charge', 'top_up', 'payment', 'credit',
                                    'gift_code', 'credit_expiry', 'refund', 'dispute', 'adjustment')),
    account         text        NOT NULL CHECK (account IN ('cash', 'credit')),
    credit_grant_id bigint      REFERENCES credit_grants (id),
    amount_micros   bigint      NOT NULL CHECK (amount_micros <> 0),
    currency        text        NOT NULL,
    reference       text        NOT NULL CHECK (length(reference) BETWEEN 1 AND 200),
    part            smallint    NOT NULL CHECK (part >= 0),
    description     text        NOT NULL DEFAULT '',
    actor           text        NOT NULL,
    occurred_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL,
    UNIQUE (reference, part),
    CHECK ((account = 'credit') = (credit_grant_id IS NOT NULL))
);
CREATE INDEX ledger_entries_org_idx ON ledger_entries (org_id, id);
CREATE INDEX ledger_entries_occurred_idx ON ledger_entries (occurred_at, id);

CREATE FUNCTION ledger_entries_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are append-only' USING ERRCODE = 'restrict_violation';
END
$$;
CREATE TRIGGER ledger_entries_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
CREATE TRIGGER ledger_entries_no_truncate BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_append_only();
