-- Billing: conversions and what they earn, refunds, rollups for live stats, referred customers,
-- price versions for markup, and the immutable ledger with its statements.

-- Per-partner fee plan overrides: fields set here replace the offer's.
CREATE TABLE offer_partner_plans (
    offer_id    bigint NOT NULL REFERENCES offers,
    partner_id  bigint NOT NULL REFERENCES partners,
    fee_plan    jsonb NOT NULL,
    PRIMARY KEY (offer_id, partner_id)
);
CREATE TRIGGER offer_partner_plans_config AFTER INSERT OR UPDATE OR DELETE ON offer_partner_plans
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();

-- Versioned prices: a merchant's wholesale price per sku, a partner's retail price per sku (markup).
-- A sale is settled at the versions in force when it happened; versions are never edited, only added.
CREATE TABLE prices (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id bigint NOT NULL REFERENCES merchants,
    sku         text NOT NULL CHECK (length(sku) BETWEEN 1 AND 100),
    kind        text NOT NULL CHECK (kind IN ('wholesale', 'retail')),
    partner_id  bigint REFERENCES partners,  -- set for retail, NULL for wholesale
    amount_minor bigint NOT NULL CHECK (amount_minor >= 0),
    currency    char(3) NOT NULL,
    valid_from  timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'retail') = (partner_id IS NOT NULL))
);
CREATE INDEX prices_lookup ON prices (merchant_id, sku, kind, partner_id, valid_from);
CREATE TRIGGER prices_config AFTER INSERT OR UPDATE OR DELETE ON prices
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();

-- One row per action or purchase event, attributed or rejected with a reason.
CREATE TABLE conversions (
    event_id        uuid PRIMARY KEY,
    ts              timestamptz NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('action', 'purchase')),
    merchant_id     bigint NOT NULL,
    offer_id        bigint NOT NULL,
    partner_id      bigint NOT NULL,  -- 0 when it could not be attributed
    link_id         bigint,
    click_id        text,
    action          text,
    order_id        text,
    amount_minor    bigint CHECK (amount_minor >= 0),
    currency        char(3),
    items           jsonb,
    customer_ref    text,
    country         text NOT NULL DEFAULT '',
    sub1            text NOT NULL DEFAULT '',
    status          text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected', 'reversed')),
    reason          text,
    hold_until      timestamptz NOT NULL,
    refunded_minor  bigint NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    approved_at     timestamptz,
    CHECK ((status = 'rejected') = (reason IS NOT NULL))
);
-- One billable conversion per order of an offer: the others are rejected as duplicates.
CREATE UNIQUE INDEX conversions_one_billable_order ON conversions (offer_id, order_id)
    WHERE order_id IS NOT NULL AND status <> 'rejected';
CREATE INDEX conversions_partner_ts ON conversions (partner_id, ts DESC);
CREATE INDEX conversions_pending ON conversions (hold_until) WHERE status = 'pending';

-- What a conversion earns, per fee kind, at the prices and rates in force when it happened.
CREATE TABLE commissions (
    event_id        uuid NOT NULL REFERENCES conversions,
    kind            text NOT NULL,
    amount_minor    bigint NOT NULL,
    currency        char(3) NOT NULL,
    basis           text NOT NULL,
    PRIMARY KEY (event_id, kind)
);

CREATE TABLE refunds (
    event_id        uuid PRIMARY KEY,
    ts              timestamptz NOT NULL,
    offer_id        bigint NOT NULL,
    order_id        text NOT NULL,
    conversion_id   uuid REFERENCES conversions,  -- NULL: no billable conversion had this order
    amount_minor    bigint NOT NULL CHECK (amount_minor >= 0),
    currency        char(3),
    reason          text  -- why it changed nothing, when it did not
);
CREATE INDEX refunds_conversion ON refunds (conversion_id, ts);

-- Live statistics, kept by ingest in the same transaction as the events they count.
CREATE TABLE rollups (
    day             date NOT NULL,
    partner_id      bigint NOT NULL,
    offer_id        bigint NOT NULL,
    country         text NOT NULL,
    sub1            text NOT NULL,
    views           bigint NOT NULL DEFAULT 0,
    clicks          bigint NOT NULL DEFAULT 0,
    unique_clicks   bigint NOT NULL DEFAULT 0,
    bots            bigint NOT NULL DEFAULT 0,
    actions         bigint NOT NULL DEFAULT 0,
    sales           bigint NOT NULL DEFAULT 0,
    sales_minor     bigint NOT NULL DEFAULT 0,
    commission_pending_minor  bigint NOT NULL DEFAULT 0,
    commission_approved_minor bigint NOT NULL DEFAULT 0,
    commission_rejected_minor bigint NOT NULL DEFAULT 0,
    commission_reversed_minor bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (partner_id, day, offer_id, country, sub1)
);
CREATE TABLE rollup_bots (
    day date NOT NULL, partner_id bigint NOT NULL, offer_id bigint NOT NULL, reason text NOT NULL,
    events bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (partner_id, day, offer_id, reason)
);
CREATE TABLE rollup_actions (
    day date NOT NULL, partner_id bigint NOT NULL, offer_id bigint NOT NULL, action text NOT NULL,
    events bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (partner_id, day, offer_id, action)
);

-- Customers a partner referred: the merchant's customer id, or a keyed hash of what it sent.
CREATE TABLE customers (
    merchant_id     bigint NOT NULL,
    partner_id      bigint NOT NULL,
    customer_ref    text NOT NULL,
    first_event_id  uuid NOT NULL,
    first_seen_at   timestamptz NOT NULL,
    orders          bigint NOT NULL DEFAULT 0,
    total_minor     bigint NOT NULL DEFAULT 0,
    currency        char(3),
    PRIMARY KEY (merchant_id, partner_id, customer_ref)
);

CREATE SEQUENCE statement_numbers;

CREATE TABLE statements (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    number          text NOT NULL UNIQUE,
    merchant_id     bigint NOT NULL REFERENCES merchants,
    partner_id      bigint NOT NULL REFERENCES partners,
    currency        char(3) NOT NULL,
    period_start    date NOT NULL,
    period_end      date NOT NULL CHECK (period_end > period_start),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'closed', 'paid')),
    carried_in_minor  bigint NOT NULL DEFAULT 0,
    total_minor       bigint,  -- carried in + every line; set at close
    payable           boolean,
    carried_out_minor bigint,
    min_payout_minor  bigint NOT NULL DEFAULT 0,
    csv_sha256      text,
    pdf_sha256      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    paid_at         timestamptz,
    UNIQUE (merchant_id, partner_id, currency, period_start)
);

CREATE TABLE ledger_lines (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source          text NOT NULL,  -- the event id the line comes from, or a settlement key (cpm)
    kind            text NOT NULL,
    merchant_id     bigint NOT NULL,
    partner_id      bigint NOT NULL,
    offer_id        bigint NOT NULL,
    currency        char(3) NOT NULL,
    amount_minor    bigint NOT NULL,
    basis           text NOT NULL,
    occurred_at     timestamptz NOT NULL,
    statement_id    bigint REFERENCES statements,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, kind)  -- replaying, two workers, a crash between commit and ack: never paid twice
);
CREATE INDEX ledger_unassigned ON ledger_lines (merchant_id, partner_id, currency) WHERE statement_id IS NULL;
CREATE INDEX ledger_statement ON ledger_lines (statement_id);

-- A closed statement is immutable. What may still happen to it: closed -> paid (with paid_at), and
-- each export's SHA-256 pinned once, when that export is first rendered. Never a delete.
CREATE FUNCTION cm_statement_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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
            AND (
                (NEW.status = OLD.status AND NEW.paid_at IS NOT DISTINCT FROM OLD.paid_at)
                OR (OLD.status = 'closed' AND NEW.status = 'paid' AND NEW.paid_at IS NOT NULL)
            )) THEN
        RAISE EXCEPTION 'statement % is % and cannot change', OLD.number, OLD.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER statements_immutable BEFORE UPDATE OR DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION cm_statement_guard();

-- Ledger lines are never edited or deleted; the only change is joining an open statement once.
-- The row checks sit in WHEN clauses (evaluated without calling a function for the common, allowed
-- update); whether the statements joined are open is checked once per UPDATE, on its transition table.
CREATE FUNCTION cm_ledger_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger line % is immutable', OLD.id USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER ledger_lines_no_delete BEFORE DELETE ON ledger_lines
    FOR EACH ROW EXECUTE FUNCTION cm_ledger_refuse();
CREATE TRIGGER ledger_lines_immutable BEFORE UPDATE ON ledger_lines
    FOR EACH ROW WHEN (
        OLD.statement_id IS NOT NULL OR NEW.statement_id IS NULL
        OR (NEW.source, NEW.kind, NEW.merchant_id, NEW.partner_id, NEW.offer_id, NEW.currency, NEW.amount_minor,
            NEW.basis, NEW.occurred_at, NEW.created_at)
           IS DISTINCT FROM
           (OLD.source, OLD.kind, OLD.merchant_id, OLD.partner_id, OLD.offer_id, OLD.currency, OLD.amount_minor,
            OLD.basis, OLD.occurred_at, OLD.created_at))
    EXECUTE FUNCTION cm_ledger_refuse();

CREATE FUNCTION cm_ledger_open_statements() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM joined j JOIN statements s ON s.id = j.statement_id WHERE s.status <> 'open') THEN
        RAISE EXCEPTION 'ledger lines can only join an open statement' USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER ledger_lines_join_open AFTER UPDATE ON ledger_lines
    REFERENCING NEW TABLE AS joined FOR EACH STATEMENT EXECUTE FUNCTION cm_ledger_open_statements();
