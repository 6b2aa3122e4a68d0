-- Settle now writes most ledger lines straight into their open statement instead of inserting them
-- and then updating each one. A line may join only an open statement: the UPDATE path has been checked
-- since 0003; this checks INSERTs the same way, once per statement, on its transition table.

CREATE FUNCTION cm_ledger_insert_open() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM (SELECT DISTINCT statement_id FROM written WHERE statement_id IS NOT NULL) j
               JOIN statements s ON s.id = j.statement_id WHERE s.status <> 'open') THEN
        RAISE EXCEPTION 'ledger lines can only join an open statement' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_lines_insert_open AFTER INSERT ON ledger_lines
    REFERENCING NEW TABLE AS written FOR EACH STATEMENT EXECUTE FUNCTION cm_ledger_insert_open();
