DROP TRIGGER users_authz_notify_update ON users;
DROP TRIGGER users_authz_notify_insert ON users;
DROP FUNCTION authz_notify_user();
DROP TRIGGER org_members_authz_notify ON org_members;
DROP FUNCTION authz_notify_org_member();
DROP TRIGGER namespace_members_authz_notify ON namespace_members;
DROP FUNCTION authz_notify_namespace_member();
