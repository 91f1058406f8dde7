-- Every change a person or the platform makes is recorded here, in the same
-- transaction as the change itself.
CREATE TABLE audit_log (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor       text        NOT NULL, -- "user:42", "admin:7", "system:billing"
    action      text        NOT NULL, -- "namespace.create", "member.remove", ...
    target      text        NOT NULL DEFAULT '', -- "ns:7", "org:3", ...
    ip          inet,
    request_id  text        NOT NULL DEFAULT '',
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);

CREATE INDEX audit_log_at_idx ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_target_idx ON audit_log (target, at DESC);
CREATE INDEX audit_log_actor_idx ON audit_log (actor, at DESC);
