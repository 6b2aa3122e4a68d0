"""Coupon codes through the tracker and ingest: each credit policy against a click by another partner, validity
dates, TUNE's promo_code, the pixel's coupon, and the order of click id, cookie and coupon (docs/attribution.md)."""

from __future__ import annotations

import datetime as dt
from typing import Any
from urllib.parse import urlencode

import asyncpg
import pytest

from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.helpers import PER_ADDRESS, click_id_of, drain, postback, tracker_client, visitor

TUNE_TOKEN = "tune-token-of-the-offer-0123456789"


async def _partner_on(db: asyncpg.Connection, prog: Programme, status: str = "approved") -> tuple[int, int, str]:
    """Another partner in the same programme, with a link on the same offer: (partner id, link id, code)."""
    partner = await db.fetchval(
        "INSERT INTO partners (name, email) VALUES ('B', $1) RETURNING id", f"b{prog.offer_id}@p.test"
    )
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, $3)",
        partner,
        prog.merchant_id,
        status,
    )
    code = f"b-link-{partner}"
    link = await db.fetchval(
        "INSERT INTO links (code, partner_id, offer_id) VALUES ($1, $2, $3) RETURNING id", code, partner, prog.offer_id
    )
    return partner, link, code


async def _coupon(db: asyncpg.Connection, offer: int, partner: int, code: str, **dates: Any) -> None:
    await db.execute(
        "INSERT INTO coupons (offer_id, partner_id, code, valid_from, valid_until) VALUES ($1, $2, $3, $4, $5)",
        offer,
        partner,
        code,
        dates.get("valid_from"),
        dates.get("valid_until"),
    )


async def _setup(db: asyncpg.Connection, policy: str) -> tuple[Programme, int, str, str]:
    """Partner A (prog) owns coupon ANNA10; partner B has a link. Returns prog, B's id, B's link code, secret."""
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await db.execute(
        "UPDATE offers SET coupon_policy = $2, tune_token = $3 WHERE id = $1", prog.offer_id, policy, TUNE_TOKEN
    )
    b_partner, _b_link, b_code = await _partner_on(db, prog)
    await _coupon(db, prog.offer_id, prog.partner_id, "ANNA10")
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    return prog, b_partner, b_code, secret


async def _sales(db: asyncpg.Connection) -> list[dict[str, Any]]:
    rows = await db.fetch(
        """SELECT order_id, partner_id, link_id, click_id, coupon, credited_by, country, sub1, status, reason
           FROM conversions ORDER BY order_id"""
    )
    return [dict(r) for r in rows]


# Each policy against: B's click + A's code (o1), A's code alone (o2), A's click + A's code (o3).
CASES = {
    "always": {"o1": ("A", "coupon"), "o2": ("A", "coupon"), "o3": ("A", "click")},
    "no_click": {"o1": ("B", "click"), "o2": ("A", "coupon"), "o3": ("A", "click")},
    "same_partner": {"o1": ("B", "click"), "o2": None, "o3": ("A", "click")},
}


@pytest.mark.parametrize("policy", list(CASES))
async def test_each_credit_policy_against_a_click_by_another_partner(
    settings: Settings, db: asyncpg.Connection, policy: str
) -> None:
    prog, b_partner, b_code, secret = await _setup(db, policy)
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        b_click = click_id_of(await client.get(f"/c/{b_code}?sub1=b-blog", headers=visitor(1)))
        a_click = click_id_of(await client.get(f"/c/{prog.code}?sub1=a-blog", headers=visitor(2)))
        base = {"offer_id": prog.offer_id, "amount": "50.00"}
        sent = {
            "o1": {**base, "order_id": "o1", "click_id": b_click, "coupon": "anna10"},  # case-insensitive
            "o2": {**base, "order_id": "o2", "coupon": "ANNA10"},
            "o3": {**base, "order_id": "o3", "click_id": a_click, "coupon": " Anna10 "},
        }
        answers = {name: await postback(client, secret, fields) for name, fields in sent.items()}
    expected = CASES[policy]
    for name, answer in answers.items():
        if expected[name] is None:
            assert answer.status_code == 422 and answer.json()["error"] == "coupon_not_credited", answer.text
        else:
            assert answer.status_code == 200, answer.text
    accepted = [name for name in sent if expected[name] is not None]
    await drain(settings, 2 + len(accepted), db)
    rows = {r["order_id"]: r for r in await _sales(db)}
    assert sorted(rows) == accepted  # a refused postback writes nothing
    who = {"A": prog.partner_id, "B": b_partner}
    for name in accepted:
        partner, by = expected[name]  # type: ignore[misc]
        row = rows[name]
        assert (row["partner_id"], row["credited_by"], row["coupon"], row["status"]) == (
            who[partner],
            by,
            "ANNA10",
            "pending",
        )
        if by == "coupon":  # a code-only credit: no click, sub ids or country
            assert row["click_id"] is None and row["sub1"] == "" and row["country"] == ""
            assert row["link_id"] == prog.link_id  # the code's partner's link on the offer
        else:
            assert row["sub1"] == ("b-blog" if partner == "B" else "a-blog")


async def test_validity_dates_and_unknown_codes(settings: Settings, db: asyncpg.Connection) -> None:
    prog, _b, b_code, secret = await _setup(db, "always")
    now = dt.datetime.now(dt.UTC)
    await _coupon(db, prog.offer_id, prog.partner_id, "OLD", valid_until=now - dt.timedelta(days=1))
    await _coupon(db, prog.offer_id, prog.partner_id, "SOON", valid_from=now + dt.timedelta(days=1))
    await _coupon(
        db,
        prog.offer_id,
        prog.partner_id,
        "NOW",
        valid_from=now - dt.timedelta(days=1),
        valid_until=now + dt.timedelta(days=1),
    )
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        b_click = click_id_of(await client.get(f"/c/{b_code}", headers=visitor(1)))
        base = {"offer_id": prog.offer_id, "amount": "5.00"}
        refused = {
            "OLD": "coupon_expired",
            "SOON": "coupon_not_yet_valid",
            "NOPE": "coupon_unknown",
            "bad code!": "coupon_unknown",
        }
        for n, (code, error) in enumerate(refused.items()):
            answer = await postback(client, secret, {**base, "order_id": f"r{n}", "coupon": code})
            assert (answer.status_code, answer.json()["error"]) == (422, error), code
        with_click = await postback(client, secret, {**base, "order_id": "k1", "coupon": "OLD", "click_id": b_click})
        dated = await postback(client, secret, {**base, "order_id": "k2", "coupon": "now"})
        no_order = await postback(client, secret, {"offer_id": prog.offer_id, "type": "action", "coupon": "NOW"})
        blank = await postback(client, secret, {**base, "order_id": "b1", "coupon": "   "})
        assert (blank.status_code, blank.json()["error"]) == (400, "missing_click_id")  # a blank code is no code
        assert (with_click.status_code, dated.status_code) == (200, 200)
        assert (no_order.status_code, no_order.json()["error"]) == (
            400,
            "missing_order_id",
        )  # a coupon sale names its order
    await drain(settings, 3, db)
    rows = {r["order_id"]: r for r in await _sales(db)}
    assert sorted(rows) == ["k1", "k2"]
    assert (rows["k1"]["credited_by"], rows["k1"]["coupon"]) == ("click", "OLD")  # an expired code: the click counts
    assert (rows["k2"]["credited_by"], rows["k2"]["partner_id"]) == ("coupon", prog.partner_id)


async def test_a_suspended_partners_code_credits_nobody(settings: Settings, db: asyncpg.Connection) -> None:
    prog, b_partner, _b_code, secret = await _setup(db, "always")
    await _coupon(db, prog.offer_id, b_partner, "BEE")
    await db.execute("UPDATE partner_programmes SET status = 'suspended' WHERE partner_id = $1", b_partner)
    async with tracker_client(settings) as (_app, client):
        answer = await postback(
            client, secret, {"offer_id": prog.offer_id, "order_id": "s1", "amount": "1.00", "coupon": "BEE"}
        )
    assert (answer.status_code, answer.json()["error"]) == (422, "coupon_inactive")


async def test_tune_promo_code_and_the_pixel_coupon(settings: Settings, db: asyncpg.Connection) -> None:
    prog, b_partner, b_code, _secret = await _setup(db, "always")
    await db.execute(
        'UPDATE offers SET conversion_sources = \'{"pixel": ["action", "purchase"]}\' WHERE id = $1', prog.offer_id
    )
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        b_click = click_id_of(await client.get(f"/c/{b_code}", headers=visitor(1)))
        tune = await client.get(
            "/aff_lsr?"
            + urlencode(
                {
                    "offer_id": prog.offer_id,
                    "security_token": TUNE_TOKEN,
                    "adv_sub": "t1",
                    "amount": "20.00",
                    "promo_code": "anna10",
                }
            )
        )
        tune_click = await client.get(
            "/aff_lsr?"
            + urlencode(
                {
                    "offer_id": prog.offer_id,
                    "security_token": TUNE_TOKEN,
                    "adv_sub": "t2",
                    "amount": "20.00",
                    "transaction_id": b_click,
                }
            )
        )
        assert (tune.text, tune_click.text) == ("success=true;", "success=true;")
        # The pixel with B's cookie and A's code: the code wins (policy always), the order names the sale.
        pixel = await client.get(
            f"/a/{prog.offer_id}?order_id=p1&amount=9.99&coupon=ANNA10",
            headers={**visitor(1), "cookie": f"cm_{prog.offer_id}={b_click}"},
        )
        assert pixel.status_code == 200 and "x-clickmint-refusal" not in pixel.headers
        client.cookies.clear()  # another browser: no cookie
        unknown = await client.get(f"/a/{prog.offer_id}?order_id=p2&amount=9.99&coupon=WHO", headers=visitor(3))
        assert unknown.headers["x-clickmint-refusal"] == "coupon_unknown"
    await drain(settings, 5, db)
    rows = {r["order_id"]: r for r in await _sales(db)}
    assert (rows["t1"]["partner_id"], rows["t1"]["credited_by"], rows["t1"]["coupon"]) == (
        prog.partner_id,
        "coupon",
        "ANNA10",
    )
    assert (rows["t2"]["partner_id"], rows["t2"]["credited_by"]) == (b_partner, "click")
    assert (rows["p1"]["partner_id"], rows["p1"]["credited_by"], rows["p1"]["status"]) == (
        prog.partner_id,
        "coupon",
        "pending",
    )


async def test_order_click_id_then_cookie_then_coupon(settings: Settings, db: asyncpg.Connection) -> None:
    """A pixel's explicit click id beats the cookie; the cookie counts without one; under policy no_click a
    coupon credits only when neither is there."""
    prog, b_partner, b_code, _secret = await _setup(db, "no_click")
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        a_click = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        b_click = click_id_of(await client.get(f"/c/{b_code}", headers=visitor(1)))
        cookie = {**visitor(1), "cookie": f"cm_{prog.offer_id}={a_click}"}
        for query in (
            f"action=one&click_id={b_click}&coupon=ANNA10",  # click id (B) over cookie (A) and coupon (A)
            "action=two&coupon=ANNA10",  # the cookie (A), the coupon not needed
            "action=three",  # the cookie alone
        ):
            answer = await client.get(f"/a/{prog.offer_id}?{query}", headers=cookie)
            assert "x-clickmint-refusal" not in answer.headers, answer.headers
        client.cookies.clear()  # another browser: no cookie
        alone = await client.get(f"/a/{prog.offer_id}?action=four&order_id=c4&coupon=ANNA10", headers=visitor(2))
        assert "x-clickmint-refusal" not in alone.headers
    await drain(settings, 6, db)
    rows = await db.fetch("SELECT action, partner_id, credited_by, via FROM conversions ORDER BY ts")
    assert [(r["action"], r["partner_id"], r["credited_by"], r["via"]) for r in rows] == [
        ("one", b_partner, "click", "pixel"),
        ("two", prog.partner_id, "cookie", "cookie"),
        ("three", prog.partner_id, "cookie", "cookie"),
        ("four", prog.partner_id, "coupon", "pixel"),
    ]


@pytest.mark.parametrize("model", ["last_click", "first_click"])
async def test_attribution_model_first_or_last_click(settings: Settings, db: asyncpg.Connection, model: str) -> None:
    prog = await programme(db, fee_plan={"cpa": {"lead": 100}})
    await db.execute("UPDATE offers SET attribution_model = $2 WHERE id = $1", prog.offer_id, model)
    b_partner, _link, b_code = await _partner_on(db, prog)
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        first = await client.get(f"/c/{prog.code}", headers=visitor(1))
        a_click = click_id_of(first)
        # The same browser clicks B's link a day later, within the window, carrying A's cookie.
        second = await client.get(f"/c/{b_code}", headers={**visitor(1), "cookie": f"cm_{prog.offer_id}={a_click}"})
        assert second.status_code == 302
        landing = second.headers["location"]
        if model == "first_click":
            assert "set-cookie" not in second.headers and f"cid={a_click}" in landing
            kept = a_click
        else:
            kept = click_id_of(second)
            assert kept != a_click and f"cid={kept}" in landing
        # The merchant's postback names the click id of the landing page; a pixel uses the cookie.
        pixel = await client.get(
            f"/a/{prog.offer_id}?action=lead", headers={**visitor(1), "cookie": f"cm_{prog.offer_id}={kept}"}
        )
        assert "x-clickmint-refusal" not in pixel.headers
    await drain(settings, 3, db)
    row = await db.fetchrow("SELECT partner_id FROM conversions")
    assert row["partner_id"] == (prog.partner_id if model == "first_click" else b_partner)
    clicks = await db.fetchval("SELECT count(*) FROM events WHERE type = 'click'")
    assert clicks == 2  # the second click is counted either way
