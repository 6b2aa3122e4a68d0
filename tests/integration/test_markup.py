"""Markup end to end: every item and unit of a basket earns retail minus wholesale, by postback and by pixel."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

import asyncpg

from billing.settle import settle
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import click_id_of, drain, postback, tracker_client
from tests.portal.kit import add_user, login, portal_client

BASKET = [
    {"sku": "MUG", "qty": 2, "price": "24.99"},
    {"sku": "CAP", "qty": 3, "price": "12.00"},
    {"sku": "HAT", "qty": 1, "price": "30.00"},  # the partner set no retail price for it: earns nothing
]
# MUG 2 x (24.99 - 15.00) + CAP 3 x (12.00 - 8.00): the sale's own unit prices play no part.
EXPECTED = 2 * (2499 - 1500) + 3 * (1200 - 800)


async def _prices(db: asyncpg.Connection, merchant_id: int, partner_id: int) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    for sku, wholesale, retail in (("MUG", 1500, 2499), ("CAP", 800, 1200), ("HAT", 2000, None)):
        await db.execute("INSERT INTO products (merchant_id, sku, name) VALUES ($1, $2, $2)", merchant_id, sku)
        await db.execute(
            """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency, valid_from)
               VALUES ($1, $2, 'wholesale', $3, 'USD', $4)""",
            merchant_id,
            sku,
            wholesale,
            since,
        )
        if retail is not None:
            await db.execute(
                """INSERT INTO prices (merchant_id, sku, kind, partner_id, amount_minor, currency, valid_from)
                   VALUES ($1, $2, 'retail', $3, $4, 'USD', $5)""",
                merchant_id,
                sku,
                partner_id,
                retail,
                since,
            )


async def test_every_item_and_unit_of_a_basket_earns_its_margin(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"markup": True})
    # The pixel sale below needs the offer to take purchases from the pixel (off by default since issue 16).
    await db.execute("""UPDATE offers SET hold_days = 0, conversion_sources = '{"pixel": ["action", "purchase"]}'""")
    await _prices(db, prog.merchant_id, prog.partner_id)
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        cid = click_id_of(await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"}))
        sent = await postback(
            client,
            secret,
            {"offer_id": prog.offer_id, "click_id": cid, "order_id": "B1", "amount": "127.98", "items": BASKET},
        )
        assert sent.status_code == 200, sent.text
        # The pixel takes the very same basket: the JSON array as the `items` parameter.
        pixel = await client.get(
            f"/a/{prog.offer_id}?click_id={cid}&order_id=B2&amount=127.98&items={quote(json.dumps(BASKET))}"
        )
        assert pixel.status_code == 200 and "x-clickmint-refusal" not in pixel.headers
    await drain(settings, 3, db)

    conversions = await db.fetch("SELECT order_id, status, note FROM conversions ORDER BY order_id")
    assert [(c["order_id"], c["status"]) for c in conversions] == [("B1", "pending"), ("B2", "pending")]
    assert all(c["note"] == "sku HAT: no retail price for this partner, earns nothing" for c in conversions)
    commissions = await db.fetch("SELECT kind, amount_minor, basis FROM commissions")
    assert [(c["kind"], c["amount_minor"]) for c in commissions] == [("markup", EXPECTED)] * 2
    assert commissions[0]["basis"] == "2 x MUG (24.99 - 15.00) + 3 x CAP (12.00 - 8.00) USD"

    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    await settle(db, f"{now:%Y-%m}", now=now, close=False)
    again = await settle(db, f"{now:%Y-%m}", now=now + dt.timedelta(seconds=1), close=False)
    assert again.ledger.lines == 0  # a replayed settle pays nothing twice
    lines = await db.fetch("SELECT kind, amount_minor FROM ledger_lines")
    assert [(line["kind"], line["amount_minor"]) for line in lines] == [("markup", EXPECTED)] * 2

    await add_user(db, "p@p.example", "partner", partner_id=prog.partner_id, merchant_id=prog.merchant_id)
    async with portal_client(settings) as portal:
        await login(portal, "p@p.example")
        orders = (await portal.get("/api/v1/partner/orders")).json()["orders"]
        assert {o["order_id"]: o["commission"] for o in orders} == {"B1": "31.98 USD", "B2": "31.98 USD"}
        assert {o["note"] for o in orders} == {"sku HAT: no retail price for this partner, earns nothing"}
        page = await portal.get("/orders")
        assert "no retail price for this partner" in page.text
