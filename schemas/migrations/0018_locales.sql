-- Issue 19 "Languages": a user's chosen language and a merchant's default (portal/i18n.py picks the page's).
ALTER TABLE users ADD COLUMN IF NOT EXISTS locale text
    CHECK (locale IS NULL OR locale IN ('en', 'es', 'fr', 'de', 'pl'));
ALTER TABLE merchants ADD COLUMN IF NOT EXISTS default_locale text NOT NULL DEFAULT 'en'
    CHECK (default_locale IN ('en', 'es', 'fr', 'de', 'pl'));
