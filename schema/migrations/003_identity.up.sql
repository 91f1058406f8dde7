-- Identity and its side effects: log-in sessions and API tokens, one-time
-- tokens (email verification, password reset), OIDC links, namespace
-- invitations, the mail outbox, the outbox the isolation reconciler
-- consumes, and rate-limit windows shared by every replica.
-- Every secret is stored only as its SHA-256 hash.

CREATE TABLE auth_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind         text        NOT NULL CHECK (kind IN ('session', 'api')),
    name         text        NOT NULL DEFAULT '',
    hash         bytea       NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX auth_tokens_hash_key ON auth_tokens (hash);
CREATE INDEX auth_tokens_user_idx ON auth_tokens (user_id, kind, id);

CREATE TABLE user_tokens (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose    text        NOT NULL CHECK (purpose IN ('verify_email', 'reset_password')),
    hash       bytea       NOT NULL,
    email      text        NOT NULL, -- the address the token was mailed to
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    used_at    timestamptz
);
CREATE UNIQUE INDEX user_tokens_hash_key ON user_tokens (hash);
CREATE INDEX user_tokens_user_idx ON user_tokens (user_id, purpose);

CREATE TABLE oidc_identities (
    issuer        text        NOT NULL,
    subject       text        NOT NULL,
    user_id       bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    email         text        NOT NULL DEFAULT '',
    created_at    timestamptz NOT NULL,
    last_login_at timestamptz NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX oidc_identities_user_idx ON oidc_identities (user_id);

CREATE TABLE invitations (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace_id bigint      NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    email        text        NOT NULL CHECK (email = lower(email)),
    role         text        NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    hash         bytea       NOT NULL,
    invited_by   bigint      REFERENCES users (id) ON DELETE SET NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    accepted_at  timestamptz,
    accepted_by  bigint      REFERENCES users (id) ON DELETE SET NULL,
    revoked_at   timestamptz
);
CREATE UNIQUE INDEX invitations_hash_key ON invitations (hash);
CREATE INDEX invitations_namespace_idx ON invitations (namespace_id, id);

CREATE TABLE mail_outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL, -- "verify_email", "reset_password", "invitation"
    recipient       text        NOT NULL,
    subject         text        NOT NULL,
    body_text       text        NOT NULL, -- blanked once sent: it may hold a secret link
    body_html       text        NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text        NOT NULL DEFAULT '',
    sent_at         timestamptz,
    failed_at       timestamptz -- gave up after the last attempt
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (next_attempt_at, id)
    WHERE sent_at IS NULL AND failed_at IS NULL;

-- Changes Kubernetes must reflect, written in the transaction of the change.
-- key names what to reconcile, e.g. "ns:7" or "user:42".
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text        NOT NULL, -- "namespace.create", "member.remove", ...
    key             text        NOT NULL,
    payload         jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_error      text        NOT NULL DEFAULT '',
    done_at         timestamptz
);
CREATE INDEX outbox_due_idx ON outbox (next_attempt_at, id) WHERE done_at IS NULL;
CREATE INDEX outbox_key_idx ON outbox (key, id);

-- Sliding-window rate limits: the count of the current fixed window and of
-- the one before, weighted by how far the current window has run.
CREATE TABLE rate_limits (
    key          text        PRIMARY KEY, -- "login:ip:203.0.113.7", "login:email:a@b.c"
    window_start timestamptz NOT NULL,
    count        integer     NOT NULL,
    prev_count   integer     NOT NULL
);
CREATE INDEX rate_limits_window_idx ON rate_limits (window_start);
