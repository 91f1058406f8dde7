-- Stripe: each org's customer, the top-ups it starts, its automatic top-up
-- settings, the invoices pushed to Stripe, and every webhook event received,
-- stored raw and processed once. Money itself moves only through the ledger
-- (migration 010); these tables hold what Stripe told us and when.

-- The Stripe customer of an org, created the first time it is needed.
CREATE TABLE stripe_customers (
    org_id      bigint      PRIMARY KEY REFERENCES orgs (id),
    customer_id text        NOT NULL UNIQUE,
    -- what Stripe was last told, to sync only when it changes
    email       text        NOT NULL,
    name        text        NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

-- A top-up: money an org asked to add, by Checkout or automatically with a
-- saved payment method. The ledger credit's reference is derived from the
-- PaymentIntent, so every event about one payment credits it once.
CREATE TABLE stripe_topups (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id              bigint      NOT NULL REFERENCES orgs (id),
    amount_micros       bigint      NOT NULL CHECK (amount_micros > 0),
    currency            text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    automatic           boolean     NOT NULL,
    status              text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    checkout_session_id text        UNIQUE,
    checkout_url        text        NOT NULL DEFAULT '',
    payment_intent_id   text        UNIQUE,
    failure             text        NOT NULL DEFAULT '',
    created_by          text        NOT NULL,
    created_at          timestamptz NOT NULL,
    updated_at          timestamptz NOT NULL
);
CREATE INDEX stripe_topups_org_idx ON stripe_topups (org_id, id);
-- At most one automatic top-up of an org is under way at a time.
CREATE UNIQUE INDEX stripe_topups_one_automatic_idx ON stripe_topups (org_id)
    WHERE automatic AND status = 'pending';

-- Automatic top-up of an org: when its usable balance is below
-- threshold_micros, charge amount_micros to the saved payment method.
CREATE TABLE stripe_auto_topups (
    org_id            bigint      PRIMARY KEY REFERENCES orgs (id),
    enabled           boolean     NOT NULL,
    threshold_micros  bigint      NOT NULL CHECK (threshold_micros >= 0),
    amount_micros     bigint      NOT NULL CHECK (amount_micros > 0),
    payment_method_id text        NOT NULL,
    updated_by        text        NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- Every payment that credited an org, by PaymentIntent: how a later refund
-- or dispute, which names only the charge or the PaymentIntent, finds its
-- org.
CREATE TABLE stripe_payments (
    payment_intent_id text        PRIMARY KEY,
    org_id            bigint      NOT NULL REFERENCES orgs (id),
    purpose           text        NOT NULL CHECK (purpose IN ('top_up', 'invoice')),
    amount_micros     bigint      NOT NULL,
    currency          text        NOT NULL,
    reference         text        NOT NULL, -- of the ledger posting
    created_at        timestamptz NOT NULL
);
CREATE INDEX stripe_payments_org_idx ON stripe_payments (org_id);

-- How much of each charge has been refunded so far: a charge.refunded event
-- carries the running total, and only the part not yet debited is.
CREATE TABLE stripe_charges (
    charge_id        text        PRIMARY KEY,
    org_id           bigint      NOT NULL REFERENCES orgs (id),
    refunded_micros  bigint      NOT NULL CHECK (refunded_micros >= 0),
    currency         text        NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Chargebacks: each one debits the org and flags it until resolved.
CREATE TABLE stripe_disputes (
    dispute_id    text        PRIMARY KEY,
    org_id        bigint      NOT NULL REFERENCES orgs (id),
    charge_id     text        NOT NULL,
    amount_micros bigint      NOT NULL,
    currency      text        NOT NULL,
    reason        text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL
);
CREATE INDEX stripe_disputes_org_idx ON stripe_disputes (org_id);

-- Our finalized invoices as pushed to Stripe.
CREATE TABLE stripe_invoices (
    invoice_id        bigint      PRIMARY KEY REFERENCES invoices (id),
    org_id            bigint      NOT NULL REFERENCES orgs (id),
    stripe_invoice_id text        NOT NULL UNIQUE,
    hosted_url        text        NOT NULL DEFAULT '',
    status            text        NOT NULL CHECK (status IN ('open', 'paid', 'payment_failed', 'void')),
    amount_micros     bigint      NOT NULL,
    currency          text        NOT NULL,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);

-- Every verified webhook event, stored raw before it is processed;
-- processed_at is set in the transaction that applies its effect.
CREATE TABLE stripe_events (
    id           text        PRIMARY KEY,
    type         text        NOT NULL,
    created      timestamptz NOT NULL, -- Stripe's time of the event
    payload      bytea       NOT NULL,
    received_at  timestamptz NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text        NOT NULL DEFAULT '',
    processed_at timestamptz,
    outcome      text        NOT NULL DEFAULT ''
);
CREATE INDEX stripe_events_created_idx ON stripe_events (created);

-- The newest event applied to each Stripe object, so that an older event
-- delivered late never overwrites newer state.
CREATE TABLE stripe_objects (
    object_id     text        PRIMARY KEY,
    status        text        NOT NULL,
    event_created timestamptz NOT NULL,
    event_id      text        NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- The discrepancies the last reconciliation found between Stripe and the
-- ledger, replaced by each run.
CREATE TABLE stripe_reconciliations (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    started_at timestamptz NOT NULL,
    since      timestamptz NOT NULL,
    payments   integer     NOT NULL,
    events     integer     NOT NULL
);
CREATE TABLE stripe_discrepancies (
    reconciliation_id bigint NOT NULL REFERENCES stripe_reconciliations (id) ON DELETE CASCADE,
    kind              text   NOT NULL,
    object_id         text   NOT NULL,
    org_id            bigint,
    detail            text   NOT NULL,
    PRIMARY KEY (reconciliation_id, kind, object_id)
);
