-- Every replica remembers the tokens it authenticated a moment ago, so that
-- most requests authenticate without a statement. These triggers tell the
-- replicas, on channel tenantplane_auth, whose tokens to forget, once the
-- change commits: a token revoked, shortened or deleted, or its user's
-- status, email or platform role changed, or the user deleted. The payload
-- is the user's id.

CREATE FUNCTION auth_notify_token() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantplane_auth', OLD.user_id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER auth_tokens_auth_notify_update
    AFTER UPDATE OF revoked_at, expires_at, user_id, hash, kind ON auth_tokens
    FOR EACH ROW WHEN (OLD.revoked_at IS DISTINCT FROM NEW.revoked_at
                       OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                       OR OLD.user_id IS DISTINCT FROM NEW.user_id
                       OR OLD.hash IS DISTINCT FROM NEW.hash
                       OR OLD.kind IS DISTINCT FROM NEW.kind)
    EXECUTE FUNCTION auth_notify_token();

CREATE TRIGGER auth_tokens_auth_notify_delete
    AFTER DELETE ON auth_tokens
    FOR EACH ROW EXECUTE FUNCTION auth_notify_token();

CREATE FUNCTION auth_notify_user() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tenantplane_auth', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER users_auth_notify_update
    AFTER UPDATE OF status, email, platform_admin ON users
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR OLD.email IS DISTINCT FROM NEW.email
                       OR OLD.platform_admin IS DISTINCT FROM NEW.platform_admin)
    EXECUTE FUNCTION auth_notify_user();

CREATE TRIGGER users_auth_notify_delete
    AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION auth_notify_user();
