-- Host names tenants claim for their Ingresses and HTTPRoutes. The primary
-- key makes a host belong to at most one namespace. A released host keeps
-- its row (released_at set) until the namespace no longer uses it, so that
-- no host is ever in use by two tenants.
CREATE TABLE host_claims (
    host         text        PRIMARY KEY CHECK (host = lower(host)),
    namespace_id bigint      NOT NULL REFERENCES namespaces (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL,
    released_at  timestamptz
);
CREATE INDEX host_claims_namespace_idx ON host_claims (namespace_id, host);
