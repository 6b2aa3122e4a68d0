-- Paying partners (docs/payouts.md): each partner's payout and tax details per programme, the merchant's own
-- legal and bank details, payout batches (SEPA pain.001 or PayPal Payouts CSV) and self-billed invoice numbers.

-- The merchant's side: who pays (legal name, country, VAT number), from which account (SEPA debtor), and
-- whether its statements are self-billed invoices, with its domestic VAT rate (a percentage, e.g. 21.00).
ALTER TABLE merchants
    ADD COLUMN legal_name text CHECK (length(legal_name) <= 200),
    ADD COLUMN country char(2) CHECK (country ~ '^[A-Z]{2}$'),
    ADD COLUMN vat_number text CHECK (length(vat_number) <= 32),
    ADD COLUMN payout_iban text CHECK (payout_iban ~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$'),
    ADD COLUMN payout_bic text CHECK (payout_bic ~ '^[A-Z0-9]{8}([A-Z0-9]{3})?$'),
    ADD COLUMN self_billing boolean NOT NULL DEFAULT false,
    ADD COLUMN vat_rate numeric(5, 2) NOT NULL DEFAULT 0 CHECK (vat_rate >= 0 AND vat_rate < 100);

-- A partner's payout and tax details for one programme: each merchant pays from what the partner gave it, so
-- one merchant's operator can never redirect what another merchant pays. The IBAN and the VAT number are
-- sealed (AES-256-GCM, a key derived from CLICKMINT_SECRET_KEY, the row's ids as associated data); only
-- their masked form is stored in the clear.
CREATE TABLE partner_payout_details (
    merchant_id     bigint NOT NULL REFERENCES merchants,
    partner_id      bigint NOT NULL REFERENCES partners,
    legal_name      text NOT NULL CHECK (length(legal_name) BETWEEN 1 AND 200),
    address         text NOT NULL CHECK (length(address) BETWEEN 1 AND 500),
    country         char(2) NOT NULL CHECK (country ~ '^[A-Z]{2}$'),
    entity          text NOT NULL CHECK (entity IN ('business', 'individual')),
    method          text NOT NULL CHECK (method IN ('sepa', 'paypal')),
    iban_sealed     bytea,
    iban_masked     text,
    bic             text CHECK (bic ~ '^[A-Z0-9]{8}([A-Z0-9]{3})?$'),
    paypal_email    text CHECK (position('@' IN paypal_email) > 1 AND length(paypal_email) <= 254),
    vat_sealed      bytea,
    vat_masked      text,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    updated_by      text NOT NULL,
    PRIMARY KEY (merchant_id, partner_id),
    CHECK ((method = 'sepa') = (iban_sealed IS NOT NULL)),
    CHECK ((method = 'paypal') = (paypal_email IS NOT NULL)),
    CHECK ((vat_sealed IS NULL) = (vat_masked IS NULL))
);

-- A payout batch: one file for the bank or PayPal. Its bytes are rendered once and kept sealed, so every
-- export of it is the same file. open -> paid (its statements marked paid in the same transaction) or
-- open -> cancelled (its statements free for another batch).
CREATE SEQUENCE payout_batch_numbers;
CREATE TABLE payout_batches (
    id              text PRIMARY KEY,
    merchant_id     bigint NOT NULL REFERENCES merchants,
    period_start    date NOT NULL,
    format          text NOT NULL CHECK (format IN ('sepa', 'paypal')),
    schema_version  text NOT NULL,  -- pain.001.001.09 / pain.001.001.03, or paypal-payouts-csv
    currency        char(3) NOT NULL,
    count           integer NOT NULL CHECK (count > 0),
    total_minor     bigint NOT NULL CHECK (total_minor > 0),
    file_sealed     bytea NOT NULL,
    file_sha256     text NOT NULL,
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'cancelled')),
    created_by      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    CHECK ((status = 'open') = (closed_at IS NULL))
);
CREATE INDEX payout_batches_merchant ON payout_batches (merchant_id, period_start);

CREATE TABLE payout_batch_items (
    batch_id        text NOT NULL REFERENCES payout_batches,
    statement_id    bigint NOT NULL REFERENCES statements,
    amount_minor    bigint NOT NULL CHECK (amount_minor > 0),
    open            boolean NOT NULL DEFAULT true,  -- false once its batch is paid or cancelled
    PRIMARY KEY (batch_id, statement_id)
);
-- A statement is never in two open batches.
CREATE UNIQUE INDEX payout_batch_items_one_open ON payout_batch_items (statement_id) WHERE open;

-- Self-billed invoices: one gap-free number sequence per merchant, taken in the transaction that closes the
-- statement (the row locked), and what the invoice printed fixed with it.
CREATE TABLE invoice_sequences (
    merchant_id     bigint PRIMARY KEY REFERENCES merchants,
    last_number     bigint NOT NULL DEFAULT 0 CHECK (last_number >= 0)
);
CREATE TABLE self_billed_invoices (
    statement_id    bigint PRIMARY KEY REFERENCES statements,
    merchant_id     bigint NOT NULL REFERENCES merchants,
    number          text NOT NULL,
    seq             bigint NOT NULL,
    vat_rule        text NOT NULL CHECK (vat_rule IN ('domestic', 'reverse_charge', 'none')),
    vat_rate        numeric(5, 2) NOT NULL,
    net_minor       bigint NOT NULL,
    vat_minor       bigint NOT NULL,
    gross_minor     bigint NOT NULL CHECK (gross_minor = net_minor + vat_minor),
    parties         jsonb NOT NULL,  -- both parties' legal details as printed
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (merchant_id, seq),
    UNIQUE (merchant_id, number)
);
CREATE FUNCTION cm_invoice_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'a self-billed invoice is immutable' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER self_billed_invoices_immutable BEFORE UPDATE OR DELETE ON self_billed_invoices
    FOR EACH ROW EXECUTE FUNCTION cm_invoice_refuse();
