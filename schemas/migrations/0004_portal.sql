-- The portal: users and their credentials, an append-only audit log, products, currency rates,
-- partners' outbound postbacks and their delivery log, and an outbox for e-mail.

CREATE TABLE users (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email               text NOT NULL UNIQUE
                        CHECK (email = lower(email) AND position('@' IN email) > 1 AND length(email) <= 254),
    name                text NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    -- partner: one partner's data; operator: one merchant's programme; network: every merchant.
    role                text NOT NULL CHECK (role IN ('partner', 'operator', 'network')),
    partner_id          bigint REFERENCES partners,
    merchant_id         bigint REFERENCES merchants,
    password_hash       text,  -- argon2id; NULL until the user sets one through a reset link
    status              text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    password_changed_at timestamptz NOT NULL DEFAULT now(),
    created_at          timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'partner') = (partner_id IS NOT NULL)),
    CHECK ((role = 'operator') = (merchant_id IS NOT NULL) OR role = 'partner')
);

-- Only a SHA-256 of the session id is stored: a database dump does not hand out live sessions.
CREATE TABLE sessions (
    token_sha256    bytea PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    csrf_token      text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);

-- An API key is shown once: cm_<prefix>_<secret>; the prefix finds the row, the SHA-256 proves it.
CREATE TABLE api_keys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         bigint NOT NULL REFERENCES users ON DELETE CASCADE,
    prefix          text NOT NULL UNIQUE,
    secret_sha256   bytea NOT NULL,
    name            text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    scopes          text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'write'] AND cardinality(scopes) > 0),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_used_at    timestamptz,
    revoked_at      timestamptz
);
CREATE INDEX api_keys_user ON api_keys (user_id);

CREATE TABLE outbox (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    to_email    text NOT NULL,
    subject     text NOT NULL,
    body        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);

-- Who changed what and when. Append-only: the database refuses UPDATE and DELETE.
CREATE TABLE audit_log (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    actor_user_id   bigint,
    actor_email     text NOT NULL,
    merchant_id     bigint,
    action          text NOT NULL,
    object_type     text NOT NULL,
    object_id       text NOT NULL,
    detail          jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_merchant ON audit_log (merchant_id, at DESC);
CREATE FUNCTION cm_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is append-only' USING ERRCODE = 'integrity_constraint_violation';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION cm_audit_refuse();

-- What a merchant sells through markup offers; prices (wholesale and each partner's retail) are versioned in prices.
CREATE TABLE products (
    merchant_id bigint NOT NULL REFERENCES merchants,
    sku         text NOT NULL CHECK (length(sku) BETWEEN 1 AND 100),
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, sku)
);

-- Operator-given exchange rates: 1 unit of base = rate units of quote, from valid_from on.
CREATE TABLE currency_rates (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    merchant_id bigint NOT NULL REFERENCES merchants,
    base        char(3) NOT NULL CHECK (base ~ '^[A-Z]{3}$'),
    quote       char(3) NOT NULL CHECK (quote ~ '^[A-Z]{3}$' AND quote <> base),
    rate        numeric(20, 10) NOT NULL CHECK (rate > 0),
    valid_from  timestamptz NOT NULL DEFAULT now(),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX currency_rates_lookup ON currency_rates (merchant_id, base, quote, valid_from DESC);

-- A partner's own server-to-server URL, called on its conversions; signed with its secret.
CREATE TABLE partner_postbacks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    partner_id  bigint NOT NULL REFERENCES partners,
    url         text NOT NULL CHECK (url ~* '^https?://' AND length(url) <= 2000),
    secret      text NOT NULL,
    events      text[] NOT NULL CHECK (events <@ ARRAY['action', 'purchase'] AND cardinality(events) > 0),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'deleted')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_postbacks_partner ON partner_postbacks (partner_id);

CREATE TABLE postback_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    postback_id     bigint NOT NULL REFERENCES partner_postbacks,
    event_id        uuid NOT NULL,
    url             text NOT NULL,  -- the URL with its macros filled in
    status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    UNIQUE (postback_id, event_id)
);
CREATE INDEX postback_deliveries_due ON postback_deliveries (next_attempt_at) WHERE status = 'pending';
