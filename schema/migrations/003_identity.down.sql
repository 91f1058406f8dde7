DROP TABLE rate_limits;
DROP TABLE outbox;
DROP TABLE mail_outbox;
DROP TABLE invitations;
DROP TABLE oidc_identities;
DROP TABLE user_tokens;
DROP TABLE auth_tokens;
