"""The browser pixel creating and destroying money without proof, tried as it was done against the real tracker,
ingest and settle: a visitor holding a click id books a purchase of any amount, refunds another partner's sale,
and claims an order id before the merchant's signed postback arrives; on /aff_lsr the offer's HMAC secret
works as a plain token. Now the offer says which channel may create which conversion, refunds come only from
authenticated server-side sources, a signed conversion supersedes the pixel's for the same order, and an HMAC
offer takes TUNE postbacks only with a TUNE token of its own."""

from __future__ import annotations

import datetime as dt
import time
from urllib.parse import urlencode

import asyncpg
import httpx
import orjson

from billing.settle import settle
from kernel.settings import Settings
from kernel.signature import sign
from tests.factories import programme
from tests.portal.kit import PASSWORD, add_user
from tests.security.live import Live, live, until


async def _click(client: httpx.AsyncClient, lv: Live, code: str, who: str = "visitor") -> str:
    click = await client.get(f"{lv.tracker_url}/c/{code}", headers={"user-agent": f"Mozilla/5.0 {who}"})
    assert click.status_code == 302
    return click.headers["location"].split("cid=")[1].split("&")[0]


async def _signed(client: httpx.AsyncClient, lv: Live, secret: str, fields: dict[str, object]) -> httpx.Response:
    body = orjson.dumps(fields)
    ts = int(time.time())
    headers = {"content-type": "application/json", "x-clickmint-timestamp": str(ts)}
    headers["x-clickmint-signature"] = sign(secret, ts, body)
    return await client.post(f"{lv.tracker_url}/postback", content=body, headers=headers)


async def _stored(db: asyncpg.Connection, n: int) -> None:
    await until(lambda: _count(db, n), f"{n} conversion events in billing")


async def _count(db: asyncpg.Connection, n: int) -> bool:
    return (
        await db.fetchval("SELECT count(*) FROM conversions") + await db.fetchval("SELECT count(*) FROM refunds") >= n
    )


async def _settle_all(db: asyncpg.Connection) -> int:
    """Settle well past the hold; the approved commission in minor units."""
    await db.execute("UPDATE conversions SET hold_until = now() - interval '1 second'")
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    await settle(db, f"{now:%Y-%m}", now=now, close=False)
    return int(await db.fetchval("SELECT coalesce(sum(amount_minor), 0) FROM ledger_lines"))


async def test_a_pixel_cannot_book_a_purchase_of_any_amount(settings: Settings, db: asyncpg.Connection):
    prog = await programme(db, window_s=3600, fee_plan={"cps_percent": "10"})
    async with live(settings) as lv, lv.client() as visitor:
        click_id = await _click(visitor, lv, prog.code)
        query = urlencode({"click_id": click_id, "amount": "1000000.00", "order_id": "fake-1"})
        pixel = await visitor.get(f"{lv.tracker_url}/a/{prog.offer_id}?{query}")
        assert pixel.status_code == 200 and pixel.content.startswith(b"GIF89a")
        assert pixel.headers.get("x-clickmint-refusal") == "source_not_allowed"
        await _stored(db, 1)
    row = await db.fetchrow("SELECT status, reason, via FROM conversions")
    assert (row["status"], row["reason"], row["via"]) == ("rejected", "source_not_allowed", "pixel")
    assert await _settle_all(db) == 0


async def test_a_pixel_cannot_refund_another_partners_sale(settings: Settings, db: asyncpg.Connection):
    a = await programme(db, window_s=3600, fee_plan={"cps_percent": "10"})
    b = await programme(db, window_s=3600, merchant_id=a.merchant_id)
    await db.execute("UPDATE links SET offer_id = $1 WHERE id = $2", a.offer_id, b.link_id)
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", a.offer_id)
    async with live(settings) as lv, lv.client() as client:
        b_click = await _click(client, lv, b.code, "b-customer")
        sale = await _signed(
            client, lv, secret, {"offer_id": a.offer_id, "click_id": b_click, "order_id": "B-1", "amount": "50.00"}
        )
        assert sale.status_code == 200, sale.text
        a_click = await _click(client, lv, a.code, "attacker")
        for via in ("query", "cookie"):
            params = {"type": "refund", "order_id": "B-1"} | ({"click_id": a_click} if via == "query" else {})
            headers = {"cookie": f"cm_{a.offer_id}={a_click}"} if via == "cookie" else {}
            refund = await client.get(f"{lv.tracker_url}/a/{a.offer_id}?{urlencode(params)}", headers=headers)
            assert refund.headers.get("x-clickmint-refusal") == "source_not_allowed", refund.headers
        await _stored(db, 3)
    assert await db.fetchval("SELECT refunded_minor FROM conversions WHERE order_id = 'B-1'") == 0
    assert await db.fetchval("SELECT count(*) FROM refunds") == 0
    assert await _settle_all(db) == 500  # B keeps its 10 % of 50.00


async def test_a_signed_postback_supersedes_the_pixels_claim(settings: Settings, db: asyncpg.Connection):
    """The offer takes pixel purchases (the operator said so, up to 30.00); a visitor's pixel claims the order
    id first. The merchant's signed postback for that order still counts; the pixel's becomes `superseded`."""
    prog = await programme(db, window_s=3600, fee_plan={"cps_percent": "10"})
    await add_user(db, "ops@shop.example", "operator", merchant_id=prog.merchant_id)
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with live(settings) as lv, lv.client() as client:
        login = await client.post(
            f"{lv.portal_url}/api/v1/auth/login", json={"email": "ops@shop.example", "password": PASSWORD}
        )
        changed = await client.patch(
            f"{lv.portal_url}/api/v1/admin/offers/{prog.offer_id}",
            json={"conversion_sources": {"pixel": ["action", "purchase"]}, "pixel_max_amount": "30.00"},
            headers={"x-csrf-token": login.json()["csrf_token"]},
        )
        assert changed.status_code == 200, changed.text
        await until(lambda: _pixel_purchases_on(lv, prog.offer_id), "the tracker to load the offer's sources")
        click_id = await _click(client, lv, prog.code)
        over = await client.get(
            f"{lv.tracker_url}/a/{prog.offer_id}?"
            + urlencode({"click_id": click_id, "order_id": "O-7", "amount": "31.00"})
        )
        assert over.headers.get("x-clickmint-refusal") == "amount_over_pixel_max"
        claim = await client.get(
            f"{lv.tracker_url}/a/{prog.offer_id}?"
            + urlencode({"click_id": click_id, "order_id": "O-7", "amount": "29.00"})
        )
        assert "x-clickmint-refusal" not in claim.headers
        await _stored(db, 2)
        real = await _signed(
            client, lv, secret, {"offer_id": prog.offer_id, "click_id": click_id, "order_id": "O-7", "amount": "80.00"}
        )
        assert real.status_code == 200, real.text
        await _stored(db, 3)
        late_pixel = await client.get(
            f"{lv.tracker_url}/a/{prog.offer_id}?"
            + urlencode({"click_id": click_id, "order_id": "O-7", "amount": "9.00"})
        )
        assert "x-clickmint-refusal" not in late_pixel.headers
        await _stored(db, 4)
    rows = await db.fetch("SELECT via, amount_minor, status, reason FROM conversions ORDER BY ts")
    assert [(r["via"], r["amount_minor"], r["status"], r["reason"]) for r in rows] == [
        ("pixel", None, "rejected", "amount_over_pixel_max"),
        ("pixel", 2900, "rejected", "superseded"),
        ("postback", 8000, "pending", None),
        ("pixel", 900, "rejected", "duplicate_order"),  # never the other way round
    ]
    sales = await db.fetchrow("SELECT sum(sales)::int AS n, sum(sales_minor)::int AS minor FROM rollups")
    assert (sales["n"], sales["minor"]) == (1, 8000)
    assert await _settle_all(db) == 800


def _pixel_purchases_on(lv: Live, offer_id: int) -> bool:
    offer = lv.tracker.cache.snapshot.offers.get(offer_id)
    return offer is not None and "purchase" in offer.sources["pixel"]


async def test_the_hmac_secret_is_not_a_tune_token(settings: Settings, db: asyncpg.Connection):
    prog = await programme(db, window_s=3600, fee_plan={"cps_percent": "10"})
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with live(settings) as lv, lv.client() as client:
        click_id = await _click(client, lv, prog.code)

        async def tune(token: str, order: str) -> str:
            query = urlencode(
                {
                    "offer_id": prog.offer_id,
                    "transaction_id": click_id,
                    "amount": "20.00",
                    "adv_sub": order,
                    "security_token": token,
                }
            )
            return (await client.get(f"{lv.tracker_url}/aff_lsr?{query}")).text

        assert (await tune(secret, "T-1")).startswith("success=false; err_msg=tune_not_enabled")
        assert (await tune(secret, "T-2")).startswith("success=false; err_msg=tune_not_enabled")
        await db.execute(
            "UPDATE offers SET tune_token = 'tune-token-of-its-own-0123456789' WHERE id = $1", prog.offer_id
        )
        await until(lambda: _tune_token_loaded(lv, prog.offer_id), "the tracker to load the TUNE token")
        assert (await tune(secret, "T-3")).startswith("success=false; err_msg=bad_token")
        assert await tune("tune-token-of-its-own-0123456789", "T-4") == "success=true;"
        await _stored(db, 1)
    rows = await db.fetch("SELECT order_id, via, status FROM conversions")
    assert [(r["order_id"], r["via"], r["status"]) for r in rows] == [("T-4", "tune", "pending")]


def _tune_token_loaded(lv: Live, offer_id: int) -> bool:
    offer = lv.tracker.cache.snapshot.offers.get(offer_id)
    return offer is not None and offer.tune_token is not None
