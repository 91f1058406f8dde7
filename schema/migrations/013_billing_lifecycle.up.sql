-- The debt lifecycle: each org's debt state, the history of its changes,
-- the namespaces billing holds suspended (for debt or a spending limit),
-- the monthly spending limits of namespaces, and the outgoing webhooks
-- that tell an org's own systems about each change.

-- One row per org the lifecycle has evaluated. debt_since is when the
-- usable balance last fell to zero or below (kept while in debt and
-- suspended); suspended_at when the org's namespaces were suspended.
CREATE TABLE billing_debt_states (
    org_id                 bigint      PRIMARY KEY REFERENCES orgs (id),
    state                  text        NOT NULL CHECK (state IN ('normal', 'low_balance', 'critical', 'debt', 'suspended')),
    since                  timestamptz NOT NULL,
    debt_since             timestamptz,
    suspended_at           timestamptz,
    workloads_deleted_at   timestamptz,
    usable_micros          bigint      NOT NULL,
    currency               text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    evaluated_at           timestamptz NOT NULL,
    CHECK ((state IN ('debt', 'suspended')) = (debt_since IS NOT NULL)),
    CHECK ((state = 'suspended') = (suspended_at IS NOT NULL))
);
CREATE INDEX billing_debt_states_open_idx ON billing_debt_states (state) WHERE state <> 'normal';

-- Every change of a debt state, and every spending limit reached or
-- lifted (namespace_id set), with its time and cause. Rows are never
-- changed; each is notified once, by the mail and webhook rows written in
-- its transaction.
CREATE TABLE billing_debt_transitions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        bigint      NOT NULL REFERENCES orgs (id),
    namespace_id  bigint      REFERENCES namespaces (id),
    event         text        NOT NULL CHECK (event IN ('low_balance', 'critical', 'debt', 'suspended', 'resumed',
                                  'recovered', 'workloads_deleted', 'spending_limit_reached', 'spending_limit_lifted')),
    from_state    text        NOT NULL,
    to_state      text        NOT NULL,
    usable_micros bigint      NOT NULL,
    currency      text        NOT NULL,
    cause         text        NOT NULL,
    at            timestamptz NOT NULL
);
CREATE INDEX billing_debt_transitions_org_idx ON billing_debt_transitions (org_id, id);

-- Namespaces billing wants suspended, and why. Only namespaces billing
-- itself suspended are held, so a payment never resumes one an admin
-- suspended. A released hold is resumed (unless another cause still holds
-- the namespace) and then deleted.
CREATE TABLE billing_namespace_holds (
    namespace_id bigint      NOT NULL REFERENCES namespaces (id),
    cause        text        NOT NULL CHECK (cause IN ('debt', 'spending_limit')),
    org_id       bigint      NOT NULL REFERENCES orgs (id),
    placed_at    timestamptz NOT NULL,
    released_at  timestamptz,
    -- owns: billing suspended the namespace (it was active, or held by
    -- billing already); only then does a release resume it.
    owns         boolean     NOT NULL,
    attempts     integer     NOT NULL DEFAULT 0,
    last_error   text        NOT NULL DEFAULT '',
    PRIMARY KEY (namespace_id, cause)
);
CREATE INDEX billing_namespace_holds_org_idx ON billing_namespace_holds (org_id);

-- The most a namespace may be charged in a calendar month (UTC).
CREATE TABLE billing_spending_limits (
    namespace_id  bigint      PRIMARY KEY REFERENCES namespaces (id),
    org_id        bigint      NOT NULL REFERENCES orgs (id),
    amount_micros bigint      NOT NULL CHECK (amount_micros > 0),
    currency      text        NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    updated_by    text        NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX billing_spending_limits_org_idx ON billing_spending_limits (org_id);

-- An org's webhook endpoint and the secret its deliveries are signed
-- with (HMAC-SHA256); the secret is shown to the owner once.
CREATE TABLE billing_webhooks (
    org_id     bigint      PRIMARY KEY REFERENCES orgs (id),
    url        text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    secret     text        NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- One delivery per transition of an org with a webhook, retried with
-- backoff until the endpoint answers 2xx or the attempts run out.
CREATE TABLE billing_webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          bigint      NOT NULL REFERENCES orgs (id),
    transition_id   bigint      NOT NULL UNIQUE REFERENCES billing_debt_transitions (id),
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text        NOT NULL DEFAULT '',
    last_status     integer,
    delivered_at    timestamptz,
    failed_at       timestamptz
);
CREATE INDEX billing_webhook_deliveries_due_idx ON billing_webhook_deliveries (next_attempt_at, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
