-- A closed statement's exports kept as bytes from their first export (billing/statements.py `export`), so every
-- later export gives those very bytes whatever changed since in what draws them: the translations, Babel's
-- CLDR data, the PDF library or its fonts. The SHA-256 pinned on the statement still names them; a kept export
-- is never changed or deleted, and only a closed (or paid) statement's export is kept, with its own digest.
CREATE TABLE IF NOT EXISTS statement_exports (
    statement_id bigint NOT NULL REFERENCES statements (id),
    kind         text NOT NULL CHECK (kind IN ('csv', 'pdf')),
    data         bytea NOT NULL,
    sha256       text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (statement_id, kind)
);

CREATE OR REPLACE FUNCTION cm_statement_export_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        RAISE EXCEPTION 'the % export of statement % is kept as it was first given and cannot change',
            OLD.kind, OLD.statement_id USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.sha256 IS DISTINCT FROM encode(sha256(NEW.data), 'hex') THEN
        RAISE EXCEPTION 'the kept % export of statement % does not match its sha256', NEW.kind, NEW.statement_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NOT EXISTS (
            SELECT 1 FROM statements s WHERE s.id = NEW.statement_id AND s.status <> 'open'
               AND (CASE NEW.kind WHEN 'pdf' THEN s.pdf_sha256 ELSE s.csv_sha256 END) = NEW.sha256) THEN
        RAISE EXCEPTION 'only the pinned export of a closed statement is kept (statement %)', NEW.statement_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;

DROP TRIGGER IF EXISTS cm_statement_export_guard ON statement_exports;
CREATE TRIGGER cm_statement_export_guard BEFORE INSERT OR UPDATE OR DELETE ON statement_exports
    FOR EACH ROW EXECUTE FUNCTION cm_statement_export_guard();
