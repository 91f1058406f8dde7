-- Who suspended a namespace (the actor's key: 'system:billing',
-- 'user:42'), NULL while it is active. A platform admin who suspends a
-- namespace billing had suspended takes the suspension over, so that a
-- payment does not resume what the admin stopped. NULL on a suspended
-- namespace means unknown (suspended before this column), which billing
-- treats as before: its own when its hold owns it.
ALTER TABLE namespaces ADD COLUMN suspended_by text;
