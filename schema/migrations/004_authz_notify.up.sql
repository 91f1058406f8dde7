-- Every replica keeps a Casbin enforcer whose role assignments derive from
-- the membership tables. These triggers tell the replicas, on channel
-- tenantplane_authz, which (user, domain) changed, once the change commits;
-- each replica then reloads the assignments of that user in that domain.
-- The payload is JSON: {"user": 42, "domain": "ns:7"}; the domain "*" means
-- every domain of the user (a platform admin flag or a status changed).

CREATE FUNCTION authz_notify_namespace_member() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('tenantplane_authz',
            json_build_object('user', OLD.user_id, 'domain', 'ns:' || OLD.namespace_id)::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('tenantplane_authz',
            json_build_object('user', NEW.user_id, 'domain', 'ns:' || NEW.namespace_id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER namespace_members_authz_notify
    AFTER INSERT OR UPDATE OR DELETE ON namespace_members
    FOR EACH ROW EXECUTE FUNCTION authz_notify_namespace_member();

CREATE FUNCTION authz_notify_org_member() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM pg_notify('tenantplane_authz',
            json_build_object('user', OLD.user_id, 'domain', 'org:' || OLD.org_id)::text);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM pg_notify('tenantplane_authz',
            json_build_object('user', NEW.user_id, 'domain', 'org:' || NEW.org_id)::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER org_members_authz_notify
    AFTER INSERT OR UPDATE OR DELETE ON org_members
    FOR EACH ROW EXECUTE FUNCTION authz_notify_org_member();

CREATE FUNCTION authz_notify_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantplane_authz',
        json_build_object('user', NEW.id, 'domain', '*')::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_authz_notify_insert
    AFTER INSERT ON users
    FOR EACH ROW WHEN (NEW.platform_admin)
    EXECUTE FUNCTION authz_notify_user();

CREATE TRIGGER users_authz_notify_update
    AFTER UPDATE OF platform_admin, status ON users
    FOR EACH ROW WHEN (OLD.platform_admin IS DISTINCT FROM NEW.platform_admin
                       OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION authz_notify_user();
