DROP TRIGGER users_auth_notify_delete ON users;
DROP TRIGGER users_auth_notify_update ON users;
DROP FUNCTION auth_notify_user();
DROP TRIGGER auth_tokens_auth_notify_delete ON auth_tokens;
DROP TRIGGER auth_tokens_auth_notify_update ON auth_tokens;
DROP FUNCTION auth_notify_token();
