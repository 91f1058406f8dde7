DROP TABLE invoice_lines;
DROP TABLE invoices;
DROP TABLE invoice_progress;
DROP TABLE invoice_numbers;
DROP TABLE gift_code_redemptions;
DROP TABLE gift_codes;
