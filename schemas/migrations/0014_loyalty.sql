-- Loyalty (issue 20): a points programme per merchant, earned by ingest on the same events as commissions.
-- Members are the merchant's customers (its customer id, as conversions.customer_ref holds it). Points live
-- in lots (one per earning, FIFO by expiry); every change of a balance is an append-only entry, unique on
-- its key, so ingest replays, two workers or a crash never earn, spend or expire twice.

CREATE TABLE loyalty_programmes (
    merchant_id         bigint PRIMARY KEY REFERENCES merchants,
    enabled             boolean NOT NULL DEFAULT false,
    currency            char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),  -- the merchant's, at enabling
    value_points        bigint NOT NULL DEFAULT 100 CHECK (value_points > 0),  -- value_points points are worth
    value_minor         bigint NOT NULL DEFAULT 1 CHECK (value_minor >= 0),    -- value_minor minor units
    expiry_days         integer CHECK (expiry_days BETWEEN 1 AND 3650),  -- NULL: points never expire
    refund_policy       text NOT NULL DEFAULT 'clamp' CHECK (refund_policy IN ('negative', 'clamp')),
    rules               jsonb NOT NULL DEFAULT '{}',  -- earning rules and campaigns (billing/loyalty_rules.py)
    tiers               jsonb NOT NULL DEFAULT '{}',  -- tier levels, basis, window, downgrade grace
    redeem_min_points   bigint NOT NULL DEFAULT 0 CHECK (redeem_min_points >= 0),
    redeem_max_percent  integer NOT NULL DEFAULT 100 CHECK (redeem_max_percent BETWEEN 1 AND 100),
    referral            jsonb NOT NULL DEFAULT '{}',  -- {"offer_id", "referrer_points", "friend_points"}
    link_secret         text NOT NULL DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
    updated_at          timestamptz NOT NULL DEFAULT now()
);
-- Ingest caches the programmes: a change bumps the configuration version as offers do.
CREATE TRIGGER loyalty_programmes_config AFTER INSERT OR UPDATE OR DELETE ON loyalty_programmes
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();

CREATE TABLE loyalty_members (
    merchant_id     bigint NOT NULL REFERENCES merchants,
    customer_ref    text NOT NULL,
    enrolled_at     timestamptz NOT NULL,
    balance         bigint NOT NULL DEFAULT 0,  -- = sum of the member's entries = active lots' remaining - debt
    debt            bigint NOT NULL DEFAULT 0 CHECK (debt >= 0),  -- reversed points already spent (policy negative)
    tier            text,
    tier_since      timestamptz,
    first_partner_id bigint,  -- the partner who brought the customer, when one did (for the partner's counts)
    PRIMARY KEY (merchant_id, customer_ref)
);

CREATE TABLE loyalty_lots (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id     bigint NOT NULL,
    customer_ref    text NOT NULL,
    source          text NOT NULL,  -- the event id it was earned by, or 'adjust:<entry key>'
    rule            text NOT NULL,  -- base, offer:<id>, sku:<sku>, action:<name>, adjust
    order_key       text,           -- offer and order id of a purchase: one earning per order and rule
    amount_minor    bigint,         -- what the purchase's rule counted, the basis of a proportional reversal
    points          bigint NOT NULL CHECK (points >= 0),
    cancelled       bigint NOT NULL DEFAULT 0 CHECK (cancelled BETWEEN 0 AND points),  -- refunded while pending
    remaining       bigint NOT NULL DEFAULT 0 CHECK (remaining >= 0),
    expired         bigint NOT NULL DEFAULT 0 CHECK (expired >= 0),
    reversed        bigint NOT NULL DEFAULT 0 CHECK (reversed >= 0),
    status          text NOT NULL CHECK (status IN ('pending', 'active', 'cancelled')),
    earned_at       timestamptz NOT NULL,
    available_at    timestamptz NOT NULL,  -- a purchase's: the end of its conversion's hold
    expires_at      timestamptz,
    UNIQUE (source, rule)  -- earning exactly once per event and rule
);
-- No foreign keys on lots and entries: ingest writes them by the thousand, and a foreign key check is a
-- query per row. Their member always exists first (billing/loyalty_ingest.py enrols before it earns).
CREATE UNIQUE INDEX loyalty_lots_one_per_order ON loyalty_lots (merchant_id, order_key, rule) WHERE order_key IS NOT NULL;
CREATE INDEX loyalty_lots_member ON loyalty_lots (merchant_id, customer_ref, status);
CREATE INDEX loyalty_lots_pending ON loyalty_lots (available_at) WHERE status = 'pending';
CREATE INDEX loyalty_lots_expiring ON loyalty_lots (expires_at) WHERE status = 'active' AND remaining > 0;

CREATE TABLE loyalty_redemptions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id     bigint NOT NULL,
    customer_ref    text NOT NULL,
    order_id        text NOT NULL CHECK (length(order_id) BETWEEN 1 AND 200),
    points          bigint NOT NULL CHECK (points > 0),
    discount_minor  bigint NOT NULL CHECK (discount_minor >= 0),
    currency        char(3) NOT NULL,
    status          text NOT NULL CHECK (status IN ('reserved', 'confirmed', 'released')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (merchant_id, customer_ref) REFERENCES loyalty_members ON UPDATE CASCADE
);
CREATE UNIQUE INDEX loyalty_redemptions_one_per_order ON loyalty_redemptions (merchant_id, order_id)
    WHERE status <> 'released';

-- Every change of a balance. Append-only: only a privacy purge may rewrite the customer_ref.
CREATE TABLE loyalty_entries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key             text NOT NULL UNIQUE,  -- earn:<lot>, expire:<lot>, reverse:<refund>:<lot>, spend:<redemption>:<lot>...
    merchant_id     bigint NOT NULL,
    customer_ref    text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('earn', 'spend', 'expire', 'reverse', 'adjust')),
    points          bigint NOT NULL,
    lot_id          bigint,
    redemption_id   bigint,
    reason          text,
    occurred_at     timestamptz NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loyalty_entries_member ON loyalty_entries (merchant_id, customer_ref, id DESC);

CREATE FUNCTION cm_loyalty_entries_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) - 'customer_ref') = (to_jsonb(OLD) - 'customer_ref') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'loyalty entries are append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER loyalty_entries_append_only BEFORE UPDATE OR DELETE ON loyalty_entries
    FOR EACH ROW EXECUTE FUNCTION cm_loyalty_entries_guard();

-- Refer a friend: a member's referral link is a partner of its own (one per member) with a link on the
-- programme's referral offer; the friend's first purchase through it rewards both (billing/loyalty_referral.py).
CREATE TABLE loyalty_referrals (
    merchant_id     bigint NOT NULL,
    customer_ref    text NOT NULL,
    partner_id      bigint NOT NULL UNIQUE REFERENCES partners,
    link_id         bigint NOT NULL REFERENCES links,
    code            text NOT NULL UNIQUE,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, customer_ref),
    FOREIGN KEY (merchant_id, customer_ref) REFERENCES loyalty_members ON UPDATE CASCADE
);
CREATE TRIGGER loyalty_referrals_config AFTER INSERT OR UPDATE OR DELETE ON loyalty_referrals
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();

-- The checkout's Idempotency-Key: the first answer, replayed for the same key and body.
CREATE TABLE loyalty_idempotency (
    merchant_id     bigint NOT NULL,
    key             text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    request_sha256  text NOT NULL,
    status          integer NOT NULL,
    response        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, key)
);

-- Checkout keys: an API key may carry the loyalty scope (reserve, confirm, release, read members).
ALTER TABLE api_keys DROP CONSTRAINT api_keys_scopes_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scopes_check
    CHECK (scopes <@ ARRAY['read', 'write', 'loyalty'] AND cardinality(scopes) > 0);
