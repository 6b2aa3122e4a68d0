-- Attribution and fraud (docs/attribution.md): coupon codes, the attribution model and coupon credit policy
-- per offer, fraud rules whose hits hold a conversion for the operator's review.

-- 1. Per offer: last or first click; when a coupon credits its partner; fraud rule thresholds
--    (schemas/offers/fraud.schema.json; an empty object means the safe defaults).
ALTER TABLE offers
    ADD COLUMN attribution_model text NOT NULL DEFAULT 'last_click'
        CHECK (attribution_model IN ('last_click', 'first_click')),
    ADD COLUMN coupon_policy text NOT NULL DEFAULT 'always'
        CHECK (coupon_policy IN ('always', 'no_click', 'same_partner')),
    ADD COLUMN fraud_rules jsonb NOT NULL DEFAULT '{}';

-- 2. Coupon codes: one partner's code on one offer, valid from/until (NULL: open-ended). A partner may
--    request one (status 'requested') that the operator approves ('active') or refuses ('rejected');
--    a code is case-insensitive and live (requested or active) once per offer.
CREATE TABLE coupons (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    offer_id        bigint NOT NULL REFERENCES offers,
    partner_id      bigint NOT NULL REFERENCES partners,
    code            text NOT NULL CHECK (code ~ '^[A-Z0-9][A-Z0-9_-]{0,63}$'),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('requested', 'active', 'rejected', 'revoked')),
    valid_from      timestamptz,
    valid_until     timestamptz,
    requested_by    text,
    decided_by      text,
    decided_at      timestamptz,
    decision_note   text CHECK (length(decision_note) <= 500),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from)
);
CREATE UNIQUE INDEX coupons_live_code ON coupons (offer_id, code) WHERE status IN ('requested', 'active');
CREATE INDEX coupons_partner ON coupons (partner_id);
CREATE TRIGGER coupons_config AFTER INSERT OR UPDATE OR DELETE ON coupons
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();

--    The partner's own customer id at the merchant, for the self-referral rule (a partner buying through its
--    own link); the rule also compares the customer's e-mail hash with the partner's e-mail address.
ALTER TABLE partner_programmes ADD COLUMN customer_ref text CHECK (length(customer_ref) BETWEEN 1 AND 255);

-- 3. Conversions: the coupon they carried, what credited them, and the review of a held one. A conversion a
--    fraud rule flags is 'held' (never approved by settle, never paid) until the operator approves it (it
--    becomes 'pending' and follows the offer's lock period) or rejects it, or its hold expires.
ALTER TABLE conversions
    ADD COLUMN coupon text,
    ADD COLUMN credited_by text CHECK (credited_by IN ('click', 'cookie', 'coupon')),
    ADD COLUMN held_reason text,
    ADD COLUMN held_until timestamptz,
    ADD COLUMN reviewed_by text,
    ADD COLUMN reviewed_at timestamptz,
    ADD COLUMN review_note text;
ALTER TABLE conversions DROP CONSTRAINT conversions_status_check;
ALTER TABLE conversions ADD CONSTRAINT conversions_status_check
    CHECK (status IN ('pending', 'held', 'approved', 'rejected', 'reversed'));
ALTER TABLE conversions ADD CONSTRAINT conversions_held_reason
    CHECK (status <> 'held' OR (held_reason IS NOT NULL AND held_until IS NOT NULL));
CREATE INDEX conversions_held ON conversions (held_until) WHERE status = 'held';
CREATE INDEX conversions_coupon ON conversions (offer_id, coupon) WHERE coupon IS NOT NULL;

-- 4. Smart links: a link whose destination is chosen per click by ordered rules (schemas/offers/
--    smart_link.schema.json; NULL: a plain link), and the clicks each variant received, per UTC day.
ALTER TABLE links ADD COLUMN smart_rules jsonb;
CREATE TABLE rollup_variants (
    link_id     bigint NOT NULL,  -- the smart link clicked
    day         date NOT NULL,
    variant     text NOT NULL,
    clicks      bigint NOT NULL DEFAULT 0,
    unique_clicks bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (link_id, day, variant)
);
