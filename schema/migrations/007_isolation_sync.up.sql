-- The Kubernetes side of namespaces. A namespace in state deleting is
-- recorded here once Kubernetes has finished deleting it, so that resyncs
-- stop visiting it.
CREATE TABLE kube_namespace_deletions (
    namespace_id bigint      PRIMARY KEY REFERENCES namespaces (id) ON DELETE CASCADE,
    deleted_at   timestamptz NOT NULL
);

-- Every insert into the outbox wakes the isolation reconciler at once
-- (LISTEN tenantplane_outbox) instead of at its next poll. Notifications
-- are sent on commit and collapse within a transaction.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantplane_outbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
