DROP TABLE billing_webhook_deliveries;
DROP TABLE billing_webhooks;
DROP TABLE billing_spending_limits;
DROP TABLE billing_namespace_holds;
DROP TABLE billing_debt_transitions;
DROP TABLE billing_debt_states;
