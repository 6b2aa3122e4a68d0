-- Retention and privacy: an append-only record of every privacy purge, and the last run of each
-- billing job (retention, settle) for the billing metrics.

-- One row per purge request. The identifier asked for is kept only as a SHA-256 (of "<merchant id>:<id>"
-- for a customer, "partner:<id>" for a partner): enough to answer "was this request carried out",
-- without keeping what was erased. The tombstone is what replaced the identifier everywhere.
CREATE TABLE privacy_requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('customer', 'partner')),
    merchant_id     bigint REFERENCES merchants,
    partner_id      bigint REFERENCES partners,
    subject_sha256  text NOT NULL CHECK (subject_sha256 ~ '^[0-9a-f]{64}$'),
    tombstone       text NOT NULL,
    requested_by    text NOT NULL DEFAULT '',
    counts          jsonb NOT NULL DEFAULT '{}',  -- rows changed, per table
    kept            text NOT NULL DEFAULT '',      -- what was deliberately kept, and why
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'customer') = (merchant_id IS NOT NULL)),
    CHECK ((kind = 'partner') = (partner_id IS NOT NULL))
);
CREATE INDEX privacy_requests_subject ON privacy_requests (subject_sha256);

CREATE FUNCTION cm_privacy_requests_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'privacy requests are append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER privacy_requests_append_only BEFORE UPDATE OR DELETE ON privacy_requests
    FOR EACH ROW EXECUTE FUNCTION cm_privacy_requests_refuse();

-- The last run of each billing job: its start, how long it took, and a summary.
CREATE TABLE job_runs (
    job         text PRIMARY KEY CHECK (job IN ('settle', 'retention')),
    started_at  timestamptz NOT NULL,
    seconds     double precision NOT NULL CHECK (seconds >= 0),
    detail      jsonb NOT NULL DEFAULT '{}'
);
