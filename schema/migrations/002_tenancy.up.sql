-- Identity and tenancy: who the users are, the orgs that pay, the namespaces
-- they own and who may do what in each. These rows are the source of truth;
-- Casbin assignments and Kubernetes RoleBindings are derived from them.

CREATE TABLE users (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email             text        NOT NULL, -- case-folded by the application
    display_name      text        NOT NULL DEFAULT '',
    password_hash     text,                 -- argon2id PHC string; NULL for OIDC-only users
    status            text        NOT NULL CHECK (status IN ('pending', 'active', 'disabled')),
    platform_admin    boolean     NOT NULL DEFAULT false,
    email_verified_at timestamptz,
    disabled_at       timestamptz,
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    CONSTRAINT users_email_folded CHECK (email = lower(email))
);
CREATE UNIQUE INDEX users_email_key ON users (email);

CREATE TABLE orgs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text        NOT NULL, -- DNS label, globally unique
    display_name text        NOT NULL DEFAULT '',
    personal     boolean     NOT NULL DEFAULT false,
    plan         text        NOT NULL DEFAULT 'free',
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE UNIQUE INDEX orgs_name_key ON orgs (name);

CREATE TABLE org_members (
    org_id     bigint      NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id    bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role       text        NOT NULL CHECK (role IN ('owner', 'billing', 'member')),
    created_at timestamptz NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX org_members_user_idx ON org_members (user_id);

CREATE TABLE namespaces (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       bigint      NOT NULL REFERENCES orgs (id),
    name         text        NOT NULL, -- the Kubernetes namespace, globally unique
    state        text        NOT NULL CHECK (state IN ('active', 'suspended', 'deleting')),
    member_limit integer     NOT NULL DEFAULT 50 CHECK (member_limit > 0),
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE UNIQUE INDEX namespaces_name_key ON namespaces (name);
CREATE INDEX namespaces_org_idx ON namespaces (org_id);

CREATE TABLE namespace_members (
    namespace_id bigint      NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    user_id      bigint      NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role         text        NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (namespace_id, user_id)
);
CREATE INDEX namespace_members_user_idx ON namespace_members (user_id);
