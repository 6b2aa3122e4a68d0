-- One source of truth for money: every figure the portal shows is read from the ledger statements are made of.
--
-- * Paid clicks, views and impressions become one ledger line per offer, partner, UTC day, kind and rate
--   (quantity x rate = amount, one rounding per line) instead of a line per event. Which events a line
--   pays is kept in ledger_line_events: an event is paid once per kind, whatever settles run, twice or at
--   once; a detail export lists a line's events.
-- * ledger_splits: each line's share per country and sub id (conversion and reversal lines: one split, of
--   the conversion's click; a traffic line: one per country and sub id of its events, cpm allocated by
--   largest remainder). The portal's commission by day, offer, sub id and country adds these up, so its
--   figures add up to the statements exactly, also in the statement's currency (fx_amount_minor, set when
--   the line joins its statement converted).
-- * The rollups keep counting traffic (now also billable_views: non-bot, non-refused views, what cpv and cpm
--   pay) but no longer hold commission: those figures were a second, diverging record.

ALTER TABLE ledger_lines
    ADD COLUMN quantity bigint CHECK (quantity > 0),  -- traffic lines: the events the line pays
    ADD COLUMN rate_minor bigint CHECK (rate_minor >= 0);  -- per event (cpc, cpv) or per 1000 views (cpm)
CREATE INDEX ledger_traffic ON ledger_lines (offer_id, partner_id, occurred_at) WHERE quantity IS NOT NULL;
-- The new columns are as immutable as the others (the only change a line sees: joining an open statement).
DROP TRIGGER ledger_lines_immutable ON ledger_lines;
CREATE TRIGGER ledger_lines_immutable BEFORE UPDATE ON ledger_lines
    FOR EACH ROW WHEN (
        OLD.statement_id IS NOT NULL OR NEW.statement_id IS NULL
        OR (NEW.source, NEW.kind, NEW.merchant_id, NEW.partner_id, NEW.offer_id, NEW.currency, NEW.amount_minor,
            NEW.basis, NEW.occurred_at, NEW.created_at, NEW.quantity, NEW.rate_minor)
           IS DISTINCT FROM
           (OLD.source, OLD.kind, OLD.merchant_id, OLD.partner_id, OLD.offer_id, OLD.currency, OLD.amount_minor,
            OLD.basis, OLD.occurred_at, OLD.created_at, OLD.quantity, OLD.rate_minor))
    EXECUTE FUNCTION cm_ledger_refuse();

CREATE TABLE ledger_line_events (
    event_id    uuid NOT NULL,
    kind        text NOT NULL,  -- cpc, cpv or cpm: a view may be paid per view and per thousand
    line_id     bigint NOT NULL,
    PRIMARY KEY (event_id, kind)
);
CREATE INDEX ledger_line_events_line ON ledger_line_events (line_id);

CREATE TABLE ledger_splits (
    line_id         bigint NOT NULL,
    partner_id      bigint NOT NULL,
    offer_id        bigint NOT NULL,
    day             date NOT NULL,  -- the line's UTC day (when what it pays or takes back happened)
    country         text NOT NULL,
    sub1            text NOT NULL,
    quantity        bigint NOT NULL DEFAULT 0,  -- traffic: events of this country and sub id
    amount_minor    bigint NOT NULL,  -- in the line's currency; the splits of a line add up to it
    fx_amount_minor bigint,  -- in its statement's currency once the line joined it converted; they add up too
    PRIMARY KEY (line_id, country, sub1)
);
CREATE INDEX ledger_splits_partner_day ON ledger_splits (partner_id, day);

-- Like the lines themselves: never deleted, never changed, except a split's converted amount, set once.
CREATE FUNCTION cm_ledger_detail_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are immutable', TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER ledger_line_events_immutable BEFORE UPDATE OR DELETE ON ledger_line_events
    FOR EACH ROW EXECUTE FUNCTION cm_ledger_detail_refuse();
CREATE TRIGGER ledger_splits_no_delete BEFORE DELETE ON ledger_splits
    FOR EACH ROW EXECUTE FUNCTION cm_ledger_detail_refuse();
CREATE TRIGGER ledger_splits_immutable BEFORE UPDATE ON ledger_splits
    FOR EACH ROW WHEN (
        OLD.fx_amount_minor IS NOT NULL
        OR (NEW.line_id, NEW.partner_id, NEW.offer_id, NEW.day, NEW.country, NEW.sub1, NEW.quantity, NEW.amount_minor)
           IS DISTINCT FROM
           (OLD.line_id, OLD.partner_id, OLD.offer_id, OLD.day, OLD.country, OLD.sub1, OLD.quantity, OLD.amount_minor))
    EXECUTE FUNCTION cm_ledger_detail_refuse();

-- Lines written before: one split each, under the country and sub id of the conversion (or refunded
-- conversion, or event) they come from; the events of per-event cpc and cpv lines are paid.
INSERT INTO ledger_splits (line_id, partner_id, offer_id, day, country, sub1, quantity, amount_minor, fx_amount_minor)
SELECT l.id, l.partner_id, l.offer_id, (l.occurred_at AT TIME ZONE 'UTC')::date,
       coalesce(c.country, rc.country, e.country, ''), coalesce(c.sub1, rc.sub1, left(e.sub1, 100), ''),
       CASE WHEN l.kind IN ('cpc', 'cpv') THEN 1 ELSE 0 END, l.amount_minor, l.fx_amount_minor
FROM ledger_lines l
LEFT JOIN conversions c ON c.event_id::text = l.source
LEFT JOIN refunds r ON r.event_id::text = l.source
LEFT JOIN conversions rc ON rc.event_id = r.conversion_id
LEFT JOIN events e ON l.kind IN ('cpc', 'cpv') AND e.id::text = l.source AND e.type IN ('click', 'view');
INSERT INTO ledger_line_events (event_id, kind, line_id)
SELECT l.source::uuid, l.kind, l.id FROM ledger_lines l WHERE l.kind IN ('cpc', 'cpv');
-- A month's cpm was one accrual line (source cpm:<offer>:<partner>:<YYYY-MM>:<n>) over the views counted
-- then: those views are paid (the ones stored before its last line was written).
INSERT INTO ledger_line_events (event_id, kind, line_id)
SELECT e.id, 'cpm', g.line_id
FROM (SELECT l.offer_id, l.partner_id, to_date(split_part(l.source, ':', 4), 'YYYY-MM') AS month,
             max(l.id) AS line_id, max(l.created_at) AS paid_at
      FROM ledger_lines l WHERE l.kind = 'cpm' AND l.source LIKE 'cpm:%' GROUP BY 1, 2, 3) g
JOIN events e ON e.offer_id = g.offer_id AND e.partner_id = g.partner_id AND e.type = 'view'
     AND e.bot_reason IS NULL AND e.ts >= g.month AND e.ts < g.month + interval '1 month'
     AND e.ingested_at <= g.paid_at
ON CONFLICT DO NOTHING;

ALTER TABLE rollups
    ADD COLUMN billable_views bigint NOT NULL DEFAULT 0,
    DROP COLUMN commission_pending_minor,
    DROP COLUMN commission_approved_minor,
    DROP COLUMN commission_rejected_minor,
    DROP COLUMN commission_reversed_minor;
UPDATE rollups SET billable_views = views;
