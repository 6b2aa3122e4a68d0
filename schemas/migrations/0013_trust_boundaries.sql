-- Trust boundaries (docs/tenancy.md, docs/conversion-sources.md, docs/egress.md).
--
-- 1. Invitations: an operator no longer enrols a partner; it invites an e-mail address to its programme,
--    and only whoever reads that mailbox (the partner) accepts. The mail carries a random token of which
--    only the SHA-256 is stored. One pending invitation per merchant and address (a new one replaces it).
CREATE TABLE partner_invitations (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id         bigint NOT NULL REFERENCES merchants,
    email               text NOT NULL CHECK (email = lower(email) AND position('@' IN email) > 1 AND length(email) <= 254),
    name                text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency            char(3) NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    min_payout_minor    bigint NOT NULL DEFAULT 0 CHECK (min_payout_minor >= 0),
    token_sha256        bytea NOT NULL UNIQUE,
    status              text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'accepted', 'withdrawn')),
    invited_by          text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz NOT NULL,
    accepted_at         timestamptz,
    partner_id          bigint REFERENCES partners,  -- who accepted it
    CHECK ((status = 'accepted') = (accepted_at IS NOT NULL AND partner_id IS NOT NULL))
);
CREATE UNIQUE INDEX partner_invitations_one_pending ON partner_invitations (merchant_id, email) WHERE status = 'pending';
CREATE INDEX partner_invitations_email ON partner_invitations (email) WHERE status = 'pending';

-- 2. Conversion sources per offer: which channel may create which kind of conversion (pixel, cookie,
--    postback, tune; an empty object means the safe defaults), the most a pixel purchase may claim, and
--    the token TUNE postbacks use on an offer whose own postbacks are HMAC-signed.
ALTER TABLE offers
    ADD COLUMN conversion_sources jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN pixel_max_amount_minor bigint CHECK (pixel_max_amount_minor > 0),
    ADD COLUMN tune_token text CHECK (length(tune_token) BETWEEN 24 AND 200);

--    How each conversion arrived and whether its source proved who sent it: an authenticated conversion
--    for an order id supersedes an unauthenticated one (rejected 'superseded'), never the other way round.
--    NULL on rows stored before: treated as authenticated, so nothing old is ever superseded.
ALTER TABLE conversions
    ADD COLUMN via text,
    ADD COLUMN authenticated boolean;

-- 3. Outbound postbacks: what the partner is shown of an attempt, never raw error text or an exact status.
ALTER TABLE postback_deliveries
    ADD COLUMN outcome text CHECK (outcome IN ('delivered', 'http_3xx', 'http_4xx', 'http_5xx', 'timeout', 'refused',
                                               'blocked'));
UPDATE postback_deliveries SET last_error = NULL;  -- raw error text is not kept
