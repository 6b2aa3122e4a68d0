"""Conversions through ingest: attribution, duplicates, repeated actions, bot clicks, refunds, rollups, customers."""

from __future__ import annotations

import asyncpg

from clickmint.settings import Settings
from tests.factories import programme
from tests.helpers import click_id_of, drain, postback, tracker_client


async def test_purchase_duplicate_refund_and_rollups(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10", "cpa": {"signup": 250}})
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        click = await client.get(f"/c/{prog.code}?sub1=blog", headers={"user-agent": "Mozilla/5.0"})
        cid = click_id_of(click)
        base = {"offer_id": prog.offer_id, "click_id": cid}
        responses = [
            await postback(client, secret, {**base, "action": "signup", "customer_id": "cust-1"}),
            await postback(client, secret, {**base, "order_id": "A1", "amount": "129.99", "customer_id": "cust-1"}),
            await postback(client, secret, {**base, "order_id": "A1", "amount": "129.99"}),  # the same order again
            await postback(client, secret, {**base, "type": "refund", "order_id": "A1", "amount": "29.99"}),
        ]
        assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    await drain(settings, 5, db)
    rows = await db.fetch(
        "SELECT kind, order_id, status, reason, amount_minor, refunded_minor FROM conversions ORDER BY kind, status"
    )
    assert [(r["kind"], r["status"], r["reason"]) for r in rows] == [
        ("action", "pending", None),
        ("purchase", "pending", None),
        ("purchase", "rejected", "duplicate_order"),
    ]
    assert rows[1]["amount_minor"] == 12999 and rows[1]["refunded_minor"] == 2999
    commissions = await db.fetch("SELECT kind, amount_minor FROM commissions ORDER BY kind")
    assert [(c["kind"], c["amount_minor"]) for c in commissions] == [("cpa", 250), ("cps", 1300)]
    rollup = await db.fetchrow("SELECT * FROM rollups WHERE partner_id = $1", prog.partner_id)
    assert (rollup["clicks"], rollup["unique_clicks"], rollup["actions"], rollup["sales"]) == (1, 1, 3, 1)
    assert rollup["sub1"] == "blog" and rollup["sales_minor"] == 12999
    assert "commission_pending_minor" not in rollup  # commission is read from commissions and the ledger
    customer = await db.fetchrow("SELECT * FROM customers")
    assert (customer["customer_ref"], customer["orders"], customer["total_minor"]) == ("cust-1", 2, 12999)
    refund = await db.fetchrow("SELECT * FROM refunds")
    assert refund["amount_minor"] == 2999 and refund["reason"] is None


async def test_an_action_without_order_counts_once_per_click_and_name(settings: Settings, db: asyncpg.Connection):
    prog = await programme(db, fee_plan={"cpa": {"signup": 250, "lead": 100}})
    repeats = await programme(db, fee_plan={"cpa": {"survey": 40}}, merchant_id=prog.merchant_id)
    await db.execute("UPDATE offers SET repeat_actions = true WHERE id = $1", repeats.offer_id)
    secrets = dict(await db.fetch("SELECT id, postback_secret FROM offers"))
    async with tracker_client(settings) as (_app, client):
        first = click_id_of(await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"}))
        second = click_id_of(await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0 (Mac)"}))
        survey = click_id_of(await client.get(f"/c/{repeats.code}", headers={"user-agent": "Mozilla/5.0"}))
        sent = [
            ({"click_id": first, "action": "signup"}, prog),
            ({"click_id": first, "action": "signup"}, prog),  # the same click and name again: a duplicate
            ({"click_id": first, "action": "lead"}, prog),  # another name on that click counts
            ({"click_id": second, "action": "signup"}, prog),  # the same name on another click counts
            ({"click_id": first, "action": "signup", "order_id": "S-1"}, prog),  # with an order id: per order
            ({"click_id": survey, "action": "survey"}, repeats),  # this offer pays every repeat
            ({"click_id": survey, "action": "survey"}, repeats),
        ]
        for n, (fields, owner) in enumerate(sent):  # n: a signed body is accepted once, a repeat needs its own
            payload = {"offer_id": owner.offer_id, "type": "action", "n": n, **fields}
            assert (await postback(client, secrets[owner.offer_id], payload)).status_code == 200
    await drain(settings, 3 + len(sent), db)
    rows = await db.fetch("SELECT click_id, action, order_id, status, reason FROM conversions ORDER BY ts")
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("pending", None),
        ("rejected", "duplicate_action"),
        ("pending", None),
        ("pending", None),
        ("pending", None),
        ("pending", None),
        ("pending", None),
    ]


async def test_a_conversion_on_a_bot_click_is_rejected(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cpa": {"signup": 250}, "cps_percent": "10"})
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        bot = await client.get(
            f"/c/{prog.code}", headers={"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
        )
        cid = click_id_of(bot)
        base = {"offer_id": prog.offer_id, "click_id": cid}
        assert (await postback(client, secret, {**base, "action": "signup"})).status_code == 200
        assert (await postback(client, secret, {**base, "order_id": "B-1", "amount": "10.00"})).status_code == 200
    await drain(settings, 3, db)
    rows = await db.fetch("SELECT status, reason FROM conversions")
    assert [(r["status"], r["reason"]) for r in rows] == [("rejected", "bot_click")] * 2
    assert await db.fetchval("SELECT count(*) FROM commissions") == 0
