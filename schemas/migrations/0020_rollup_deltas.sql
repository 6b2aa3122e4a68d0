-- Issue 22 "derive as sets": ingest appends a batch's traffic counts instead of updating them in place.
--
-- A batch of 5,000 events touched ~3,000 rollup rows (partner x day x offer x country x sub1): an upsert of a
-- row for every 1.6 events, the largest part of what deriving cost PostgreSQL. Now each batch COPYs its sums,
-- one row per key, into `rollup_deltas` (no index, no lock, in the batch's transaction as before), and ingest
-- folds the deltas into `rollup_totals` every few seconds: one statement that deletes them and adds them to
-- their key's row, so a key is updated once per fold, not once per batch. `rollups` is now the view of both,
-- summed per key: every reader sees exactly the events committed, folded or not, as before.
-- Inserting into the view (the demo's traffic, tests) appends a delta.

ALTER TABLE rollups RENAME TO rollup_totals;
ALTER TABLE rollup_totals RENAME CONSTRAINT rollups_pkey TO rollup_totals_pkey;

CREATE TABLE rollup_deltas (LIKE rollup_totals INCLUDING DEFAULTS)
    WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 50000);

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

-- Moves every committed delta into the totals, atomically; returns how many deltas it moved. Ingest calls it
-- every few seconds (billing/derive.py); while one fold runs, another returns at once without folding.
CREATE FUNCTION cm_fold_rollups() RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    moved bigint;
BEGIN
    IF NOT pg_try_advisory_xact_lock(hashtext('cm_fold_rollups')) THEN
        RETURN 0;
    END IF;
    WITH gone AS (DELETE FROM rollup_deltas RETURNING *),
         summed AS (INSERT INTO rollup_totals AS t (day, partner_id, offer_id, country, sub1, views, clicks,
                        unique_clicks, bots, actions, sales, sales_minor, billable_views)
                    SELECT day, partner_id, offer_id, country, sub1, sum(views), sum(clicks), sum(unique_clicks),
                           sum(bots), sum(actions), sum(sales), sum(sales_minor), sum(billable_views)
                    FROM gone GROUP BY day, partner_id, offer_id, country, sub1
                    ORDER BY partner_id, day, offer_id, country, sub1
                    ON CONFLICT (partner_id, day, offer_id, country, sub1) DO UPDATE SET
                        views = t.views + EXCLUDED.views, clicks = t.clicks + EXCLUDED.clicks,
                        unique_clicks = t.unique_clicks + EXCLUDED.unique_clicks, bots = t.bots + EXCLUDED.bots,
                        actions = t.actions + EXCLUDED.actions, sales = t.sales + EXCLUDED.sales,
                        sales_minor = t.sales_minor + EXCLUDED.sales_minor,
                        billable_views = t.billable_views + EXCLUDED.billable_views)
    SELECT count(*) INTO moved FROM gone;
    RETURN moved;
END $$;
