-- What a statement prints about the two parties: postal addresses where known, and the merchant's payment
-- terms. Like the names, they are fixed in statements.names when the statement closes, so a later change
-- never alters a closed statement's bytes.

ALTER TABLE merchants
    ADD COLUMN address text CHECK (length(address) <= 500),
    ADD COLUMN payment_terms text CHECK (length(payment_terms) <= 500);
ALTER TABLE partners ADD COLUMN address text CHECK (length(address) <= 500);
