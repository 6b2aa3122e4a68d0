-- Issue 19 "Languages", statement exports: the language a statement's exports are written in, fixed when it
-- closes (billing/statements.py: the partner's users.locale, else the merchant's default_locale, else 'en').
-- NULL for every statement closed before: they are English (layouts 1 and 2) and re-export byte for byte.
ALTER TABLE statements ADD COLUMN IF NOT EXISTS locale text
    CHECK (locale IS NULL OR locale IN ('en', 'es', 'fr', 'de', 'pl'));

-- The guard of 0006, with the language fixed too once the statement is closed.
CREATE OR REPLACE FUNCTION cm_statement_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'open' THEN
            RAISE EXCEPTION 'statement % is % and cannot be deleted', OLD.number, OLD.status
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'open' AND NOT (
            (NEW.number, NEW.merchant_id, NEW.partner_id, NEW.currency, NEW.period_start, NEW.period_end,
             NEW.carried_in_minor, NEW.total_minor, NEW.payable, NEW.carried_out_minor, NEW.min_payout_minor,
             NEW.closed_at, NEW.created_at)
            IS NOT DISTINCT FROM
            (OLD.number, OLD.merchant_id, OLD.partner_id, OLD.currency, OLD.period_start, OLD.period_end,
             OLD.carried_in_minor, OLD.total_minor, OLD.payable, OLD.carried_out_minor, OLD.min_payout_minor,
             OLD.closed_at, OLD.created_at)
            AND (OLD.csv_sha256 IS NULL OR NEW.csv_sha256 IS NOT DISTINCT FROM OLD.csv_sha256)
            AND (OLD.pdf_sha256 IS NULL OR NEW.pdf_sha256 IS NOT DISTINCT FROM OLD.pdf_sha256)
            AND NEW.names IS NOT DISTINCT FROM OLD.names
            AND NEW.locale IS NOT DISTINCT FROM OLD.locale
            AND (
                (NEW.status = OLD.status AND NEW.paid_at IS NOT DISTINCT FROM OLD.paid_at)
                OR (OLD.status = 'closed' AND NEW.status = 'paid' AND NEW.paid_at IS NOT NULL)
            )) THEN
        RAISE EXCEPTION 'statement % is % and cannot change', OLD.number, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
