ALTER TABLE billing_debt_states DROP COLUMN plan_seen, DROP COLUMN entries_seen;
