-- The portal's pages (issue 18): a merchant's opt-in to the partner marketplace, what a partner says when it
-- applies (its site and how it promotes), a partner's profile (website, payout details), and the partner's
-- notifications shown on the portal (each is also mailed through the outbox).

ALTER TABLE merchants ADD COLUMN listed boolean NOT NULL DEFAULT false;  -- shown in the partners' marketplace
COMMENT ON COLUMN merchants.listed IS 'true: the programme and its public offers are shown to every partner to apply';

ALTER TABLE partner_programmes
    ADD COLUMN site_url text CHECK (length(site_url) <= 500),
    ADD COLUMN promotion text CHECK (length(promotion) <= 1000),
    ADD COLUMN applied_at timestamptz;

ALTER TABLE partners
    ADD COLUMN website text CHECK (length(website) <= 500),
    ADD COLUMN payout_details text CHECK (length(payout_details) <= 500);

CREATE TABLE notifications (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id  bigint NOT NULL REFERENCES partners,
    kind        text NOT NULL CHECK (kind IN ('approved', 'new_offer', 'statement_ready', 'application')),
    text        text NOT NULL CHECK (length(text) BETWEEN 1 AND 500),
    link        text CHECK (link LIKE '/%'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    read_at     timestamptz
);
CREATE INDEX notifications_partner ON notifications (partner_id, created_at DESC);

-- A programme manager's notes on a partner (its per-partner page), seen only within its merchant.
CREATE TABLE partner_notes (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id  bigint NOT NULL REFERENCES merchants,
    partner_id   bigint NOT NULL REFERENCES partners,
    author_email text NOT NULL,
    text         text NOT NULL CHECK (length(text) BETWEEN 1 AND 2000),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_notes_partner ON partner_notes (merchant_id, partner_id, created_at DESC);
