-- Gift codes and invoices. Gift codes are stored only as a hash of the
-- code; redeeming one posts a gift_code credit through the ledger. Invoices
-- are monthly per org, summed from charge_lines (migration 011) per
-- namespace and resource, and move draft → finalized → paid | void.

CREATE TABLE gift_codes (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- hex SHA-256 of the normalised code; the code itself is shown once.
    code_hash          text        NOT NULL UNIQUE CHECK (length(code_hash) = 64),
    amount_micros      bigint      NOT NULL CHECK (amount_micros > 0),
    currency           text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- after expires_at the code can no longer be redeemed.
    expires_at         timestamptz NOT NULL,
    -- how long the credit of a redemption lasts; NULL: it never expires.
    credit_valid_for   interval,
    max_redemptions    integer     NOT NULL CHECK (max_redemptions > 0),
    redemptions        integer     NOT NULL DEFAULT 0 CHECK (redemptions BETWEEN 0 AND max_redemptions),
    note               text        NOT NULL DEFAULT '',
    created_by         text        NOT NULL,
    created_at         timestamptz NOT NULL
);

-- One redemption per code and org.
CREATE TABLE gift_code_redemptions (
    gift_code_id bigint      NOT NULL REFERENCES gift_codes (id),
    org_id       bigint      NOT NULL REFERENCES orgs (id),
    reference    text        NOT NULL UNIQUE, -- of the ledger posting
    redeemed_by  text        NOT NULL,
    redeemed_at  timestamptz NOT NULL,
    PRIMARY KEY (gift_code_id, org_id)
);
CREATE INDEX gift_code_redemptions_org_idx ON gift_code_redemptions (org_id);

-- The one counter of invoice numbers: a finalisation takes the next
-- number in its own transaction, so numbers are unique and without gaps.
CREATE TABLE invoice_numbers (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last      bigint  NOT NULL CHECK (last >= 0)
);
INSERT INTO invoice_numbers (singleton, last) VALUES (true, 0);

-- How far the scheduled pass has invoiced: every period ending at or
-- before invoiced_through has all its invoices finalised.
CREATE TABLE invoice_progress (
    singleton        boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    invoiced_through timestamptz NOT NULL
);

CREATE TABLE invoices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          bigint      NOT NULL REFERENCES orgs (id),
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL CHECK (period_end > period_start),
    -- prepaid: a statement of what the balance paid; postpaid: a bill.
    billing_mode    text        NOT NULL CHECK (billing_mode IN ('prepaid', 'postpaid')),
    status          text        NOT NULL CHECK (status IN ('draft', 'finalized', 'paid', 'void')),
    currency        text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    subtotal_micros bigint      NOT NULL,
    tax_rate_bps    integer     NOT NULL CHECK (tax_rate_bps BETWEEN 0 AND 10000),
    tax_micros      bigint      NOT NULL,
    total_micros    bigint      NOT NULL CHECK (total_micros = subtotal_micros + tax_micros),
    -- set when finalised; sequential across the platform.
    number          bigint      UNIQUE,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    finalized_at    timestamptz,
    paid_at         timestamptz,
    voided_at       timestamptz,
    void_reason     text        NOT NULL DEFAULT '',
    UNIQUE (org_id, period_start),
    CHECK ((status = 'draft') = (number IS NULL) OR status = 'void'),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);
CREATE INDEX invoices_org_idx ON invoices (org_id, id);
CREATE INDEX invoices_status_idx ON invoices (status, id) WHERE status IN ('draft', 'finalized');

CREATE TABLE invoice_lines (
    invoice_id    bigint NOT NULL REFERENCES invoices (id) ON DELETE CASCADE,
    line          integer NOT NULL CHECK (line >= 0),
    namespace_id  bigint NOT NULL,
    namespace     text   NOT NULL,
    resource      text   NOT NULL,
    quantity      bigint NOT NULL,
    amount_micros bigint NOT NULL,
    PRIMARY KEY (invoice_id, line),
    UNIQUE (invoice_id, namespace_id, resource)
);
