"""`clickmint demo`: one merchant, two offers, two approved partners with links, and URLs to click."""

from __future__ import annotations

import secrets

import asyncpg

DEMO_SLUG = "demo-shop"


def _code() -> str:
    return secrets.token_urlsafe(8)


async def seed(dsn: str, tracker_url: str, portal_url: str | None = None) -> str:
    """Create the demo programme once (idempotent) and describe it with ready-to-click URLs."""
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            merchant = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", DEMO_SLUG)
            if merchant is None:
                merchant = await conn.fetchval(
                    "INSERT INTO merchants (slug, name, currency, branding) VALUES ($1, 'Demo Shop', 'USD', $2) "
                    "RETURNING id",
                    DEMO_SLUG,
                    '{"primary": "#0b7a5f", "accent": "#f0a202", "tagline": "Earn 10% on every order you send us"}',
                )
                offers = [
                    await conn.fetchval(
                        """INSERT INTO offers (merchant_id, name, destination_url, allowed_hosts, currency, fee_plan,
                                               hold_days, attribution_window_s)
                           VALUES ($1, $2, $3, $4, 'USD', $5, 14, 2592000) RETURNING id""",
                        merchant,
                        name,
                        url,
                        hosts,
                        plan,
                    )
                    for name, url, hosts, plan in (
                        (
                            "Spring sale: 10% of every order",
                            "https://shop.example.com/?cid={click_id}&aff={partner_id}&s1={sub1}",
                            ["shop.example.com"],
                            '{"cps_percent": "10"}',
                        ),
                        (
                            "Newsletter signup: 2.50 per lead",
                            "https://shop.example.com/newsletter?cid={click_id}",
                            ["shop.example.com"],
                            '{"cpa": {"signup": 250}}',
                        ),
                    )
                ]
                for name, email in (
                    ("Alice's Deals", "alice@partners.example"),
                    ("Bob Reviews", "bob@partners.example"),
                ):
                    partner = await conn.fetchval(
                        "INSERT INTO partners (name, email) VALUES ($1, $2) "
                        "ON CONFLICT (email) DO UPDATE SET name = EXCLUDED.name RETURNING id",
                        name,
                        email,
                    )
                    await conn.execute(
                        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved') "
                        "ON CONFLICT DO NOTHING",
                        partner,
                        merchant,
                    )
                    for offer in offers:
                        await conn.execute(
                            "INSERT INTO links (code, partner_id, offer_id) VALUES ($1, $2, $3)",
                            _code(),
                            partner,
                            offer,
                        )
            logins = await _users(conn, merchant)
            loyalty = await _loyalty(conn, merchant, portal_url)
            rows = await conn.fetch(
                """SELECT l.code, p.name AS partner, o.name AS offer FROM links l
                   JOIN partners p ON p.id = l.partner_id JOIN offers o ON o.id = l.offer_id
                   WHERE o.merchant_id = $1 ORDER BY p.id, o.id""",
                merchant,
            )
    finally:
        await conn.close()
    lines = ["Demo programme 'Demo Shop' (merchant slug demo-shop). Tracking URLs:"]
    for row in rows:
        lines.append(f"  {row['partner']:<14} {row['offer']:<36} {tracker_url}/c/{row['code']}?sub1=demo")
    lines.append(f"View pixel of the first link: {tracker_url}/v/{rows[0]['code']}")
    if portal_url:
        lines.append(f"Portal: {portal_url}/m/{DEMO_SLUG} (partners), {portal_url}/login (operator)")
    for email, password in logins:
        lines.append(f"  sign in as {email:<32} password {password}")
    if not logins:
        lines.append("  demo users exist; `clickmint admin user reset EMAIL` prints a link to set a new password")
    return "\n".join(lines + loyalty)


async def _loyalty(conn: asyncpg.Connection, merchant: int, portal_url: str | None) -> list[str]:
    """A loyalty programme on the demo shop (once), a demo member with a welcome gift, and how to try it."""
    import datetime as dt

    from billing import loyalty_ledger
    from portal.loyalty_api import member_token

    made = await conn.fetchval(
        """INSERT INTO loyalty_programmes (merchant_id, enabled, currency, value_points, value_minor, expiry_days,
                                           rules, tiers)
           VALUES ($1, true, 'USD', 100, 100, 365, $2, $3) ON CONFLICT DO NOTHING RETURNING true""",
        merchant,
        '{"points_per_unit": 1, "unit_minor": 100, "actions": {"signup": 50}}',
        '{"basis": "points", "window_days": 365, "levels": [{"name": "Gold", "min": 1000, "multiplier": "1.5"}]}',
    )
    prog = await loyalty_ledger.programme_of(conn, merchant)
    if made:
        await loyalty_ledger.adjust(conn, prog, "demo-customer", 500, "welcome gift (demo)", "clickmint demo")
    secret = await conn.fetchval("SELECT link_secret FROM loyalty_programmes WHERE merchant_id = $1", merchant)
    token = member_token(secret, merchant, "demo-customer", dt.datetime.now(dt.UTC) + dt.timedelta(days=30))
    lines = [
        "Loyalty: on for Demo Shop (1 point per 1.00 spent, 50 per signup, 100 points = 1.00 USD, Gold at 1,000).",
        "  Sales and signups sent by signed postback with customer_id earn points (pending for the 14-day hold).",
        "  clickmint loyalty balance --merchant demo-shop demo-customer",
        "  clickmint loyalty adjust --merchant demo-shop demo-customer 250 --reason 'try it'",
        "  clickmint loyalty key --merchant demo-shop --email operator@demo-shop.example   (checkout API key)",
    ]
    if portal_url:
        lines.append(f"  the member's page: {portal_url}/loyalty/m/{token}")
    return lines


async def _users(conn: asyncpg.Connection, merchant: int) -> list[tuple[str, str]]:
    """Demo sign-ins (development only): the operator and each partner, with a password printed once."""
    from portal.passwords import hash_password

    made = []
    candidates = [("operator@demo-shop.example", "operator", None)]
    for partner_id, email in await conn.fetch(
        """SELECT p.id, p.email FROM partners p JOIN partner_programmes pp ON pp.partner_id = p.id
           WHERE pp.merchant_id = $1 ORDER BY p.id""",
        merchant,
    ):
        candidates.append((email, "partner", partner_id))
    for email, role, partner_id in candidates:
        password = secrets.token_urlsafe(12)
        created = await conn.fetchval(
            """INSERT INTO users (email, name, role, partner_id, merchant_id, password_hash)
               VALUES ($1, $1, $2, $3, $4, $5) ON CONFLICT (email) DO NOTHING RETURNING id""",
            email,
            role,
            partner_id,
            merchant,
            hash_password(password),
        )
        if created is not None:
            made.append((email, password))
    return made
