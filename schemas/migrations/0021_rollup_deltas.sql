-- Issue 22 "derive as sets": ingest appends a batch's traffic counts instead of updating them in place.
--
-- A batch of 5,000 events touched ~3,000 rollup rows (partner x day x offer x country x sub1): an upsert of a
-- row for every 1.6 events, the largest part of what deriving cost PostgreSQL. Now each batch COPYs its sums,
-- one row per key, into `rollup_deltas` (no index, no row lock, in the batch's transaction as before), and
-- ingest folds the deltas into `rollup_totals` every few seconds (cm_fold_rollups below): summed into their
-- key's row and truncated, so a key is updated once per fold, not once per batch. `rollups` is now the view of both,
-- summed per key: every reader sees exactly the events committed, folded or not, as before.
-- Inserting into the view (the demo's traffic, tests) appends a delta.

ALTER TABLE rollups RENAME TO rollup_totals;
ALTER TABLE rollup_totals RENAME CONSTRAINT rollups_pkey TO rollup_totals_pkey;

CREATE TABLE rollup_deltas (LIKE rollup_totals INCLUDING DEFAULTS);

CREATE VIEW rollups AS
SELECT day, partner_id, offer_id, country, sub1,
       sum(views)::bigint AS views, sum(clicks)::bigint AS clicks, sum(unique_clicks)::bigint AS unique_clicks,
       sum(bots)::bigint AS bots, sum(actions)::bigint AS actions, sum(sales)::bigint AS sales,
       sum(sales_minor)::bigint AS sales_minor, sum(billable_views)::bigint AS billable_views
FROM (SELECT day, partner_id, offer_id, country, sub1, views, clicks, unique_clicks, bots, actions, sales,
             sales_minor, billable_views FROM rollup_totals
      UNION ALL
      SELECT day, partner_id, offer_id, country, sub1, views, clicks, unique_clicks, bots, actions, sales,
             sales_minor, billable_views FROM rollup_deltas) r
GROUP BY day, partner_id, offer_id, country, sub1;

ALTER VIEW rollups ALTER COLUMN views SET DEFAULT 0;
ALTER VIEW rollups ALTER COLUMN clicks SET DEFAULT 0;
ALTER VIEW rollups ALTER COLUMN unique_clicks SET DEFAULT 0;
ALTER VIEW rollups ALTER COLUMN bots SET DEFAULT 0;
ALTER VIEW rollups ALTER COLUMN actions SET DEFAULT 0;
ALTER VIEW rollups ALTER COLUMN sales SET DEFAULT 0;
ALTER VIEW rollups ALTER COLUMN sales_minor SET DEFAULT 0;
ALTER VIEW rollups ALTER COLUMN billable_views SET DEFAULT 0;

CREATE FUNCTION cm_rollups_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO rollup_deltas (day, partner_id, offer_id, country, sub1, views, clicks, unique_clicks, bots,
                               actions, sales, sales_minor, billable_views)
    VALUES (NEW.day, NEW.partner_id, NEW.offer_id, NEW.country, NEW.sub1, NEW.views, NEW.clicks,
            NEW.unique_clicks, NEW.bots, NEW.actions, NEW.sales, NEW.sales_minor, NEW.billable_views);
    RETURN NEW;
END $$;
CREATE TRIGGER rollups_append INSTEAD OF INSERT ON rollups FOR EACH ROW EXECUTE FUNCTION cm_rollups_append();

-- Moves every delta into the totals, atomically; returns how many deltas it moved. Ingest calls it every few
-- seconds in a transaction of its own (billing/derive.py). The table lock waits for the batches writing deltas to
-- commit and holds new ones (and readers of `rollups`) until this commits: no delta can come between the sum
-- and the TRUNCATE, and emptying the table costs nothing per row (a DELETE of each delta cost about as much as
-- the upsert it saved). While one fold runs, another returns 0 at once.
CREATE FUNCTION cm_fold_rollups() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('cm_fold_rollups')) THEN
        RETURN 0;
    END IF;
    LOCK TABLE rollup_deltas IN ACCESS EXCLUSIVE MODE;
    SELECT count(*) INTO moved FROM rollup_deltas;
    IF moved = 0 THEN
        RETURN 0;
    END IF;
    INSERT INTO rollup_totals AS t (day, partner_id, offer_id, country, sub1, views, clicks, unique_clicks, bots,
                                    actions, sales, sales_minor, billable_views)
    SELECT day, partner_id, offer_id, country, sub1, sum(views), sum(clicks), sum(unique_clicks), sum(bots),
           sum(actions), sum(sales), sum(sales_minor), sum(billable_views)
    FROM rollup_deltas GROUP BY day, partner_id, offer_id, country, sub1
    ORDER BY partner_id, day, offer_id, country, sub1
    ON CONFLICT (partner_id, day, offer_id, country, sub1) DO UPDATE SET
        views = t.views + EXCLUDED.views, clicks = t.clicks + EXCLUDED.clicks,
        unique_clicks = t.unique_clicks + EXCLUDED.unique_clicks, bots = t.bots + EXCLUDED.bots,
        actions = t.actions + EXCLUDED.actions, sales = t.sales + EXCLUDED.sales,
        sales_minor = t.sales_minor + EXCLUDED.sales_minor,
        billable_views = t.billable_views + EXCLUDED.billable_views;
    TRUNCATE rollup_deltas;
    RETURN moved;
END $$;
