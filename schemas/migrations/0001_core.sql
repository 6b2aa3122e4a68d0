-- The core model: merchants, offers, partners, their programme memberships, links, creatives.
-- Every change to what the tracker caches bumps config_version and notifies channel cm_config,
-- so trackers refresh within a second without reading Postgres per request.

CREATE TABLE merchants (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency    char(3) NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    rounding    text NOT NULL DEFAULT 'half_even' CHECK (rounding IN ('half_even', 'half_up')),
    branding    jsonb NOT NULL DEFAULT '{}',  -- logo, colours, landing text of the partner login page
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE offers (
    id                      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id             bigint NOT NULL REFERENCES merchants,
    name                    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    status                  text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    visibility              text NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'partners', 'private')),
    destination_url         text NOT NULL CHECK (destination_url ~* '^https?://'),
    fallback_url            text CHECK (fallback_url ~* '^https?://'),
    allowed_hosts           text[] NOT NULL DEFAULT '{}',  -- deep-link hosts; '.example.com' admits subdomains
    attribution_window_s    integer NOT NULL DEFAULT 2592000 CHECK (attribution_window_s BETWEEN 60 AND 31536000),
    hold_days               integer NOT NULL DEFAULT 30 CHECK (hold_days BETWEEN 0 AND 365),
    currency                char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    fee_plan                jsonb NOT NULL DEFAULT '{}',
    caps                    jsonb NOT NULL DEFAULT '{}',
    postback_security       text NOT NULL DEFAULT 'hmac' CHECK (postback_security IN ('hmac', 'token')),
    postback_secret         text NOT NULL DEFAULT replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''),
    postback_ip_allowlist   cidr[] NOT NULL DEFAULT '{}',
    starts_at               timestamptz,
    ends_at                 timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX offers_merchant ON offers (merchant_id);

CREATE TABLE partners (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    email           text NOT NULL UNIQUE CHECK (position('@' IN email) > 1),
    currency        char(3) NOT NULL DEFAULT 'USD' CHECK (currency ~ '^[A-Z]{3}$'),
    min_payout_minor bigint NOT NULL DEFAULT 0 CHECK (min_payout_minor >= 0),
    created_at      timestamptz NOT NULL DEFAULT now()
);

-- A partner works for a merchant only once approved; suspension stops new links from paying.
CREATE TABLE partner_programmes (
    partner_id  bigint NOT NULL REFERENCES partners,
    merchant_id bigint NOT NULL REFERENCES merchants,
    status      text NOT NULL DEFAULT 'applied' CHECK (status IN ('applied', 'approved', 'suspended', 'rejected')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (partner_id, merchant_id)
);

CREATE TABLE creatives (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    offer_id        bigint NOT NULL REFERENCES offers,
    name            text NOT NULL,
    content_type    text NOT NULL CHECK (content_type IN ('image/png', 'image/gif', 'image/jpeg', 'image/webp', 'image/svg+xml')),
    width           integer NOT NULL CHECK (width BETWEEN 1 AND 4096),
    height          integer NOT NULL CHECK (height BETWEEN 1 AND 4096),
    body            bytea NOT NULL CHECK (octet_length(body) <= 1048576),
    sha256          text NOT NULL,
    alt_text        text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE links (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[A-Za-z0-9_-]{4,64}$'),  -- the {link} of /c/{link}
    partner_id  bigint NOT NULL REFERENCES partners,
    offer_id    bigint NOT NULL REFERENCES offers,
    creative_id bigint REFERENCES creatives,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX links_partner ON links (partner_id);
CREATE INDEX links_offer ON links (offer_id);

-- One row; bumped by every change the tracker caches. Trackers poll it as a fallback to NOTIFY.
CREATE TABLE config_version (
    singleton   boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    version     bigint NOT NULL
);
INSERT INTO config_version VALUES (true, 1);

CREATE FUNCTION cm_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_version SET version = version + 1;
    PERFORM pg_notify('cm_config', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER merchants_config AFTER INSERT OR UPDATE OR DELETE ON merchants
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();
CREATE TRIGGER offers_config AFTER INSERT OR UPDATE OR DELETE ON offers
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();
CREATE TRIGGER partner_programmes_config AFTER INSERT OR UPDATE OR DELETE ON partner_programmes
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();
CREATE TRIGGER creatives_config AFTER INSERT OR UPDATE OR DELETE ON creatives
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();
CREATE TRIGGER links_config AFTER INSERT OR UPDATE OR DELETE ON links
    FOR EACH STATEMENT EXECUTE FUNCTION cm_config_changed();
