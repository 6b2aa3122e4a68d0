"""What the portal tests share: an in-process portal with its lifespan, users with real argon2id
hashes, sign-in, API keys, and a second partner whose data must never leak."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from kernel.env import Env
from kernel.settings import Settings
from portal import passwords
from portal.app import build
from portal.settings import PortalSettings

PASSWORD = "correct horse battery staple"


@functools.cache
def password_hash() -> str:
    return passwords.hash_password(PASSWORD)


def portal_settings(settings: Settings, **env: str) -> PortalSettings:
    values = {"CLICKMINT_DELIVER_POSTBACKS": "false", "CLICKMINT_TRACKER_PUBLIC_URL": "https://t.example", **env}
    return PortalSettings.from_env(Env(values), core=settings)


@contextlib.asynccontextmanager
async def portal_client(settings: Settings, **env: str) -> AsyncIterator[httpx.AsyncClient]:
    app = build(portal_settings(settings, **env))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("198.51.100.23", 4000))
        async with httpx.AsyncClient(transport=transport, base_url="http://portal.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


async def add_user(
    conn: asyncpg.Connection,
    email: str,
    role: str,
    *,
    partner_id: int | None = None,
    merchant_id: int | None = None,
    password_hash_: str | None = None,
) -> int:
    return await conn.fetchval(
        """INSERT INTO users (email, name, role, partner_id, merchant_id, password_hash)
           VALUES ($1, $2, $3, $4, $5, $6) RETURNING id""",
        email,
        email.split("@")[0],
        role,
        partner_id,
        merchant_id,
        password_hash_ or password_hash(),
    )


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Sign in; the client keeps the session cookie; returns the CSRF token for unsafe requests."""
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


async def api_key(conn: asyncpg.Connection, user_id: int, scopes: tuple[str, ...] = ("read", "write")) -> str:
    key, prefix, digest = passwords.new_api_key()
    await conn.execute(
        "INSERT INTO api_keys (user_id, prefix, secret_sha256, name, scopes) VALUES ($1, $2, $3, 'test', $4)",
        user_id,
        prefix,
        digest,
        list(scopes),
    )
    return key


@dataclass
class World:
    """Merchant M with partners A and B; B has a private offer, a link, an order, a statement, a postback,
    a retail price and an API key of its own. Every string of B's carries the marker BBB_SECRET."""

    merchant_id: int
    other_merchant_id: int
    a_partner: int
    b_partner: int
    a_user: int
    b_user: int
    operator_user: int
    other_operator_user: int
    ids: dict[str, int]
    marker: str = "BBB_SECRET"


async def world(conn: asyncpg.Connection) -> World:
    m = await conn.fetchval("INSERT INTO merchants (slug, name) VALUES ('shop-m', 'Shop M') RETURNING id")
    m2 = await conn.fetchval("INSERT INTO merchants (slug, name) VALUES ('bbb-only', 'Other shop') RETURNING id")
    a = await conn.fetchval("INSERT INTO partners (name, email) VALUES ('Alice', 'alice@p.example') RETURNING id")
    b = await conn.fetchval(
        "INSERT INTO partners (name, email) VALUES ('BBB_SECRET Bob', 'bbb_secret@p.example') RETURNING id"
    )
    await conn.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $3, 'approved'), "
        "($2, $3, 'approved'), ($2, $4, 'approved')",
        a,
        b,
        m,
        m2,
    )
    public = await conn.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, allowed_hosts)
           VALUES ($1, 'Public offer', 'https://shop.example/?c={click_id}', 'USD', '{shop.example}') RETURNING id""",
        m,
    )
    private = await conn.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, visibility)
           VALUES ($1, 'BBB_SECRET private', 'https://shop.example/bbb', 'USD', 'private') RETURNING id""",
        m,
    )
    b_only = await conn.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency)
           VALUES ($1, 'BBB_SECRET elsewhere', 'https://bbb.example/', 'USD') RETURNING id""",
        m2,
    )
    b_link = await conn.fetchval(
        "INSERT INTO links (code, partner_id, offer_id) VALUES ('BBB_SECRET_link', $1, $2) RETURNING id", b, private
    )
    a_link = await conn.fetchval(
        "INSERT INTO links (code, partner_id, offer_id) VALUES ('alice-link-1', $1, $2) RETURNING id", a, public
    )
    await conn.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, link_id, order_id,
                                    amount_minor, currency, status, hold_until, customer_ref)
           VALUES (gen_random_uuid(), now(), 'purchase', $1, $2, $3, $4, 'BBB_SECRET_order', 1000, 'USD',
                   'pending', now() + interval '30 days', 'BBB_SECRET_customer')""",
        m,
        private,
        b,
        b_link,
    )
    await conn.execute(
        """INSERT INTO customers (merchant_id, partner_id, customer_ref, first_event_id, first_seen_at, orders,
                                  total_minor, currency)
           VALUES ($1, $2, 'BBB_SECRET_customer', gen_random_uuid(), now(), 1, 1000, 'USD')""",
        m,
        b,
    )
    await conn.execute(
        """INSERT INTO rollups (day, partner_id, offer_id, country, sub1, clicks)
           VALUES (current_date, $1, $2, 'BB', 'BBB_SECRET_sub', 7)""",
        b,
        private,
    )
    b_statement = await conn.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           VALUES ('BBB_SECRET-1', $1, $2, 'USD', date_trunc('month', now())::date,
                   (date_trunc('month', now()) + interval '1 month')::date) RETURNING id""",
        m,
        b,
    )
    await conn.execute(
        """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor, basis,
                                     occurred_at, statement_id)
           VALUES ('BBB_SECRET_event', 'cps', $1, $2, $3, 'USD', 100, 'BBB_SECRET basis', now(), $4)""",
        m,
        b,
        private,
        b_statement,
    )
    await conn.execute("INSERT INTO products (merchant_id, sku, name) VALUES ($1, 'BBB-SKU', 'BBB_SECRET product')", m2)
    await conn.execute(
        """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency)
           VALUES ($1, 'BBB-SKU', 'wholesale', 500, 'USD')""",
        m2,
    )
    await conn.execute(
        """INSERT INTO prices (merchant_id, sku, kind, partner_id, amount_minor, currency)
           VALUES ($1, 'BBB-SKU', 'retail', $2, 777, 'USD')""",
        m2,
        b,
    )
    b_postback = await conn.fetchval(
        """INSERT INTO partner_postbacks (partner_id, url, secret, events)
           VALUES ($1, 'https://bbb.example/BBB_SECRET', 'BBB_SECRET_pb', '{action,purchase}') RETURNING id""",
        b,
    )
    a_user = await add_user(conn, "alice@p.example", "partner", partner_id=a, merchant_id=m)
    b_user = await add_user(conn, "bbb_secret@p.example", "partner", partner_id=b, merchant_id=m)
    op = await add_user(conn, "ops@shop-m.example", "operator", merchant_id=m)
    other_op = await add_user(conn, "ops@bbb.example", "operator", merchant_id=m2)
    b_key = await conn.fetchval(
        """INSERT INTO api_keys (user_id, prefix, secret_sha256, name, scopes)
           VALUES ($1, 'bbbbbbbbbbbb', '\\x00', 'BBB_SECRET key', '{read}') RETURNING id""",
        b_user,
    )
    creative = await conn.fetchval(
        """INSERT INTO creatives (offer_id, name, content_type, width, height, body, sha256)
           VALUES ($1, 'BBB_SECRET banner', 'image/png', 1, 1, '\\x00', 'x') RETURNING id""",
        b_only,
    )
    ids = {
        "public_offer": public,
        "private_offer": private,
        "b_only_offer": b_only,
        "b_link": b_link,
        "a_link": a_link,
        "b_statement": b_statement,
        "b_postback": b_postback,
        "b_key": b_key,
        "b_creative": creative,
    }
    return World(m, m2, a, b, a_user, b_user, op, other_op, ids)


def has(response: httpx.Response, marker: str) -> bool:
    return marker.lower().encode() in response.content.lower()


def csrf_headers(token: str) -> dict[str, Any]:
    return {"x-csrf-token": token}
