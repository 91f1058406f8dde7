DROP TABLE ledger_entries;
DROP FUNCTION ledger_entries_append_only();
DROP TABLE credit_grants;
DROP TABLE billing_accounts;
