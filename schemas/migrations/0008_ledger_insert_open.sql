-- Settle now writes most ledger lines straight into their open statement (one INSERT) instead of
-- inserting them and then updating each one. The rule stays: a line joins only an existing, open
-- statement, and a statement never goes away under its lines.
--
-- The foreign key checked that once per line (a lookup and a row lock for each of a million lines:
-- 4 of settle's 30 s). These triggers check it once per statement, on the rows the INSERT or UPDATE
-- wrote, and take the same kind of lock, once per statement joined: FOR SHARE, so a concurrent close
-- of that statement waits for these lines to commit and then counts them, or, when the close came
-- first, this check sees the statement closed and refuses. A statement with lines is never deleted.

ALTER TABLE ledger_lines DROP CONSTRAINT ledger_lines_statement_id_fkey;

CREATE OR REPLACE FUNCTION cm_ledger_open_statements() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    wanted bigint;
    found bigint;
BEGIN
    SELECT count(DISTINCT statement_id) INTO wanted FROM joined WHERE statement_id IS NOT NULL;
    IF wanted > 0 THEN
        SELECT count(*) INTO found FROM (
            SELECT s.id FROM statements s
            WHERE s.id IN (SELECT statement_id FROM joined) AND s.status = 'open'
            FOR SHARE OF s) locked;
        IF found <> wanted THEN
            RAISE EXCEPTION 'ledger lines can only join an open statement'
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_lines_insert_open AFTER INSERT ON ledger_lines
    REFERENCING NEW TABLE AS joined FOR EACH STATEMENT EXECUTE FUNCTION cm_ledger_open_statements();

CREATE FUNCTION cm_statement_keep_lines() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM ledger_lines WHERE statement_id = OLD.id) THEN
        RAISE EXCEPTION 'statement % has ledger lines and cannot be deleted', OLD.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER statements_keep_lines BEFORE DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION cm_statement_keep_lines();
