"""A small programme to look at: two listed merchants, a partner with a fortnight of traffic, pending sales, a
closed statement, a banner and notifications. The browser tests walk it and `python -m clickmint.screenshots`
photographs it. Only ever seeded into a throwaway database (the tests', the screenshot command's own)."""

from __future__ import annotations

import datetime as dt
import hashlib
import struct
import uuid
import zlib
from typing import Any

import asyncpg

from billing.public import loyalty_ledger, statements
from kernel.money import format_amount
from kernel.sealed import Sealer
from portal import passwords
from portal.loyalty_api import member_token

PASSWORD = "showcase password 1"  # the throwaway database's users only
PARTNER_EMAIL = "pat@coupons.example"
OPERATOR_EMAIL = "ops@sunny.example"
MEMBER = "ann@example.com"  # a loyalty member (a shop's customer)

PARTNER_PAGES = [
    "/dashboard",
    "/dashboard?range=30d&metric=commission",
    "/orders",
    "/offers",
    "/links",
    "/creatives",
    "/prices",
    "/postbacks",
    "/statements",
    "/statements/{statement}",
    "/notifications",
    "/profile",
    "/payout-details",
    "/payout-details/{merchant}",
    "/coupons",
]
OPERATOR_PAGES = [
    "/admin",
    "/admin/offers",
    "/admin/offers/{offer}",
    "/admin/offers/{offer}/integration",
    "/admin/conversions",
    "/admin/partners",
    "/admin/partners/{partner}",
    "/admin/links",
    "/admin/creatives",
    "/admin/products",
    "/admin/rates",
    "/admin/statements",
    "/admin/audit",
    "/admin/payouts",
    "/admin/partners/{partner}/payout-details",
    "/admin/holds",
    "/admin/loyalty",
    "/admin/account",
]
PUBLIC_PAGES = [
    "/m/sunny-shop",
    "/login",
    "/forgot",
    "/reset",
    "/invitation?token={invitation_token}",
    "/loyalty/m/{member_token}",
]
# Routes that are not pages to walk: form targets, files, redirects. Every other GET route must be in a list above
# (tests/portal/test_pages.py checks the lists against the route table, so a new page cannot be forgotten).
NOT_PAGES = {"/", "/logout", "/creatives/{creative_id}/image"}


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A plain one-colour PNG (a banner to preview), made without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


async def _user(db: asyncpg.Connection, email: str, role: str, partner_id: int | None, merchant_id: int) -> None:
    await db.execute(
        """INSERT INTO users (email, name, role, partner_id, merchant_id, password_hash)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        email,
        email.split("@")[0],
        role,
        partner_id,
        merchant_id,
        passwords.hash_password(PASSWORD),
    )


async def seed(db: asyncpg.Connection, today: dt.date | None = None, secret_key: str | None = None) -> dict[str, Any]:
    """The showcase programme; returns the ids the pages name. With the portal's `secret_key`, also a payout batch
    (its file is sealed with that key, so the portal can open it)."""
    today = today or dt.datetime.now(dt.UTC).date()
    sunny = await db.fetchval(
        """INSERT INTO merchants (slug, name, branding, listed)
           VALUES ('sunny-shop', 'Sunny Shop',
                   '{"primary": "#0b6e4f", "tagline": "Partners earn 8% on every order"}', true) RETURNING id"""
    )
    nordic = await db.fetchval(
        """INSERT INTO merchants (slug, name, branding, listed)
           VALUES ('nordic-gear', 'Nordic Gear', '{"tagline": "Outdoor gear for every season"}', true) RETURNING id"""
    )
    offer = await db.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, fee_plan, caps, hold_days, allowed_hosts)
           VALUES ($1, 'Everyday offer', 'https://sunny.example/?c={click_id}', 'USD',
                   '{"cps_percent": "8", "cpc": 5}', '{"clicks": {"daily": 200}}', 14, '{sunny.example}')
           RETURNING id""",
        sunny,
    )
    await db.execute(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, fee_plan, hold_days)
           VALUES ($1, 'Outdoor season', 'https://nordic.example/?c={click_id}', 'EUR',
                   '{"cpa": {"signup": 250}, "cps_percent": "5"}', 30)""",
        nordic,
    )
    partner = await db.fetchval(
        """INSERT INTO partners (name, email, min_payout_minor) VALUES ('Coupon Corner', $1, 5000) RETURNING id""",
        PARTNER_EMAIL,
    )
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')", partner, sunny
    )
    applicant = await db.fetchval(
        "INSERT INTO partners (name, email) VALUES ('Deal Digest', 'hello@dealdigest.example') RETURNING id"
    )
    await db.execute(
        """INSERT INTO partner_programmes (partner_id, merchant_id, status, site_url, promotion, applied_at)
           VALUES ($1, $2, 'applied', 'https://dealdigest.example', 'Weekly newsletter, 20,000 readers', now())""",
        applicant,
        sunny,
    )
    link = await db.fetchval(
        "INSERT INTO links (code, partner_id, offer_id) VALUES ('sunny-pat-1', $1, $2) RETURNING id", partner, offer
    )
    image = png(300, 250, (11, 110, 79))
    creative = await db.fetchval(
        """INSERT INTO creatives (offer_id, name, content_type, width, height, body, sha256, alt_text)
           VALUES ($1, 'Medium rectangle', 'image/png', 300, 250, $2, $3, 'Sunny Shop: everyday deals')
           RETURNING id""",
        offer,
        image,
        hashlib.sha256(image).hexdigest(),
    )
    await db.execute("INSERT INTO products (merchant_id, sku, name) VALUES ($1, 'LAMP-1', 'Desk lamp')", sunny)
    await db.execute(
        """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency, valid_from)
           VALUES ($1, 'LAMP-1', 'wholesale', 2000, 'USD', now() - interval '1 day')""",
        sunny,
    )
    for back in range(14):
        day = today - dt.timedelta(days=back)
        for sub1, country, clicks in (("newsletter", "DE", 20 + 3 * (back % 5)), ("blog", "US", 8 + back % 3)):
            await db.execute(
                """INSERT INTO rollups (day, partner_id, offer_id, country, sub1, views, clicks, unique_clicks, bots)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)""",
                day,
                partner,
                offer,
                country,
                sub1,
                clicks * 6,
                clicks,
                clicks - 2,
            )
    for back, amount in ((1, 12340), (3, 5600), (6, 23999)):
        event = uuid.uuid4()
        ts = dt.datetime.combine(today - dt.timedelta(days=back), dt.time(12), dt.UTC)
        await db.execute(
            """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, link_id, order_id,
                                        amount_minor, currency, status, hold_until, country, sub1)
               VALUES ($1, $2, 'purchase', $3, $4, $5, $6, $7, $8, 'USD', 'pending', $9, 'DE', 'newsletter')""",
            event,
            ts,
            sunny,
            offer,
            partner,
            link,
            f"SO-{1000 + back}",
            amount,
            ts + dt.timedelta(days=14),
        )
        await db.execute(
            """INSERT INTO commissions (event_id, kind, amount_minor, currency, basis)
               VALUES ($1, 'cps', $2, 'USD', $3)""",
            event,
            amount * 8 // 100,
            f"8% of {format_amount(amount, 'USD')} USD",
        )
    start = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    end = today.replace(day=1)
    statement = await db.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           VALUES ('SUN-2026-0001', $1, $2, 'USD', $3, $4) RETURNING id""",
        sunny,
        partner,
        start,
        end,
    )
    line = await db.fetchval(
        """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor, basis,
                                     occurred_at, statement_id)
           VALUES ($1, 'cps', $2, $3, $4, 'USD', 196500, '8% of 24,562.50 USD', $5, $6) RETURNING id""",
        str(uuid.uuid4()),
        sunny,
        partner,
        offer,
        dt.datetime.combine(start, dt.time(12), dt.UTC),
        statement,
    )
    await db.execute(
        """INSERT INTO ledger_splits (line_id, partner_id, offer_id, day, country, sub1, amount_minor)
           VALUES ($1, $2, $3, $4, 'DE', 'newsletter', 196500)""",
        line,
        partner,
        offer,
        start,
    )
    await statements.close(db, statement, dt.datetime.now(dt.UTC))
    await db.execute(
        """INSERT INTO notifications (partner_id, kind, text, link) VALUES
           ($1, 'approved', 'Sunny Shop approved you: its offers are open to you.', '/offers'),
           ($1, 'statement_ready', 'Statement SUN-2026-0001 is ready.', $2)""",
        partner,
        f"/statements/{statement}",
    )
    # A coupon code in use, another one waiting for the operator, and a sale held for review on the code.
    await db.execute("INSERT INTO coupons (offer_id, partner_id, code) VALUES ($1, $2, 'CORNER10')", offer, partner)
    await db.execute(
        "INSERT INTO coupons (offer_id, partner_id, code, status) VALUES ($1, $2, 'CORNER20', 'requested')",
        offer,
        partner,
    )
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                    currency, status, hold_until, held_reason, held_until, coupon, credited_by)
           VALUES ($1, now() - interval '2 hours', 'purchase', $2, $3, $4, 'SO-2001', 4550, 'USD', 'held',
                   now() + interval '14 days', 'self_referral', now() + interval '30 days', 'CORNER10', 'coupon')""",
        uuid.uuid4(),
        sunny,
        offer,
        partner,
    )
    if secret_key is not None:  # a paid PayPal batch of an earlier month, its file sealed as the portal seals it
        batch = "SUN-PAYPAL-1"
        earlier = (start - dt.timedelta(days=1)).replace(day=1)
        file = f"{PARTNER_EMAIL},982.50,USD,SUN-2026-0000,Sunny Shop {earlier:%B %Y},PAYPAL\r\n".encode()
        await db.execute(
            """INSERT INTO payout_batches (id, merchant_id, period_start, format, schema_version, currency, count,
                                           total_minor, file_sealed, file_sha256, status, created_by, closed_at)
               VALUES ($1, $2, $3, 'paypal', 'paypal-payouts-csv', 'USD', 1, 98250, $4, $5, 'paid', $6, now())""",
            batch,
            sunny,
            earlier,
            Sealer(secret_key).seal(file, f"payout_batch:{batch}"),
            hashlib.sha256(file).hexdigest(),
            OPERATOR_EMAIL,
        )
    # The loyalty programme (100 points = 1.00 USD) with a member and a manual adjustment; the member's own page.
    await db.execute(
        """INSERT INTO loyalty_programmes (merchant_id, enabled, currency, value_points, value_minor, expiry_days,
                                           refund_policy, rules, tiers)
           VALUES ($1, true, 'USD', 100, 100, 365, 'clamp',
                   '{"unit_minor": 100, "points_per_unit": 1, "actions": {"signup": 50}}', '{}')""",
        sunny,
    )
    loyalty = await loyalty_ledger.programme_of(db, sunny)
    await loyalty_ledger.adjust(db, loyalty, MEMBER, 1250, "Welcome bonus", OPERATOR_EMAIL)
    secret = await db.fetchval("SELECT link_secret FROM loyalty_programmes WHERE merchant_id = $1", sunny)
    token = member_token(secret, sunny, MEMBER, dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    # An invitation to the programme, pending (its link is the invitation page a newcomer sees).
    invitation = passwords.new_token()
    await db.execute(
        """INSERT INTO partner_invitations (merchant_id, email, name, currency, min_payout_minor, token_sha256,
                                            invited_by, expires_at)
           VALUES ($1, 'new@blog.example', 'Blog Newcomer', 'USD', 5000, $2, $3, now() + interval '14 days')""",
        sunny,
        passwords.sha256(invitation),
        OPERATOR_EMAIL,
    )
    await _user(db, PARTNER_EMAIL, "partner", partner, sunny)
    await _user(db, OPERATOR_EMAIL, "operator", None, sunny)
    return {
        "merchant": sunny,
        "other_merchant": nordic,
        "offer": offer,
        "partner": partner,
        "link": link,
        "statement": statement,
        "applicant": applicant,
        "creative": creative,
        "member_token": token,
        "invitation_token": invitation,
    }


def pages(role: str, ids: dict[str, Any]) -> list[str]:
    listing = {"partner": PARTNER_PAGES, "operator": OPERATOR_PAGES, "public": PUBLIC_PAGES}[role]
    return [p.format(**ids) for p in listing]


def named_pages(role: str, ids: dict[str, Any]) -> list[tuple[str, str]]:
    """(a name for the page, its path): the name has the ids but not the secret tokens of signed links."""
    named = {k: ("token" if k.endswith("_token") else v) for k, v in ids.items()}
    listing = {"partner": PARTNER_PAGES, "operator": OPERATOR_PAGES, "public": PUBLIC_PAGES}[role]
    return [(p.format(**named), p.format(**ids)) for p in listing]
