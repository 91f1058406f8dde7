ALTER TABLE namespaces DROP COLUMN suspended_by;
