-- What the debt lifecycle saw of an org when it last evaluated it, so that
-- its scheduled pass evaluates only the orgs whose state may have changed:
-- the ledger entries of the account (every change of a balance is one)
-- and the org's plan. -1 and NULL make every existing org due once.
ALTER TABLE billing_debt_states
    ADD COLUMN entries_seen bigint NOT NULL DEFAULT -1,
    ADD COLUMN plan_seen    text;
