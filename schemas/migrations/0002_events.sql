-- Raw events, partitioned by the day the tracker saw them (UTC). The primary key holds the
-- tracker-made event id and its timestamp, so a replayed stream entry lands on the same row and
-- `ON CONFLICT DO NOTHING` makes ingest idempotent. A default partition catches far-off dates.

CREATE TABLE events (
    id          uuid NOT NULL,
    ts          timestamptz NOT NULL,
    type        text NOT NULL CHECK (type IN ('view', 'click', 'action', 'purchase', 'refund')),
    link_id     bigint,
    offer_id    bigint,
    partner_id  bigint,
    click_id    text,
    country     text NOT NULL DEFAULT '',
    bot_reason  text,           -- NULL: a human; else why we think it is not (counted apart, never billed)
    refusal     text,           -- NULL: accepted; else why it is not billable (unknown link, bad click id...)
    is_unique   boolean,
    sub1 text, sub2 text, sub3 text, sub4 text, sub5 text, source text,
    ip_prefix   text NOT NULL DEFAULT '',  -- /24 or /48, never the full address
    order_id    text,
    action      text,
    amount_minor bigint,
    currency    text,
    payload     json NOT NULL,  -- the event as the tracker wrote it; json (kept as text) is cheaper to ingest
    ingested_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, ts)
) PARTITION BY RANGE (ts);

CREATE TABLE events_default PARTITION OF events DEFAULT;

-- Creates the daily partitions for [first, first + days); safe to call concurrently and repeatedly.
CREATE FUNCTION cm_ensure_event_partitions(first date, days integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    d date;
    made integer := 0;
    name text;
BEGIN
    FOR i IN 0 .. days - 1 LOOP
        d := first + i;
        name := 'events_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(name) IS NULL THEN
            PERFORM pg_advisory_xact_lock(hashtext(name));
            IF to_regclass(name) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',
                    name, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
                made := made + 1;
            END IF;
        END IF;
    END LOOP;
    RETURN made;
END $$;

SELECT cm_ensure_event_partitions((now() AT TIME ZONE 'UTC')::date - 7, 22);

-- Conversions look up the click they came from (its sub id and country); nothing else reads raw events
-- by a key: live statistics come from rollups.
CREATE INDEX events_click_id ON events (click_id) WHERE type = 'click';
