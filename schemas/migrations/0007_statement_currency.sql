-- Statements per currency (the default), or every line converted into the partner's currency at the
-- operator's rate in force when the line joins its statement: the rate is locked on the line then.

ALTER TABLE merchants ADD COLUMN statement_currency text NOT NULL DEFAULT 'own'
    CHECK (statement_currency IN ('own', 'partner'));

-- Set together with statement_id (never later: the immutability trigger refuses any change once a line
-- is in a statement). fx_amount_minor is the line in its statement's currency.
ALTER TABLE ledger_lines
    ADD COLUMN fx_currency char(3),
    ADD COLUMN fx_rate numeric(20, 10) CHECK (fx_rate > 0),
    ADD COLUMN fx_amount_minor bigint,
    ADD CONSTRAINT ledger_lines_fx_whole CHECK (
        (fx_currency IS NULL AND fx_rate IS NULL AND fx_amount_minor IS NULL)
        OR (fx_currency IS NOT NULL AND fx_rate IS NOT NULL AND fx_amount_minor IS NOT NULL));
