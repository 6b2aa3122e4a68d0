"""Conversions through ingest: attribution, duplicates, refunds, rollups and customers."""

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
    assert rollup["commission_pending_minor"] == 1550
    customer = await db.fetchrow("SELECT * FROM customers")
    assert (customer["customer_ref"], customer["orders"], customer["total_minor"]) == ("cust-1", 2, 12999)
    refund = await db.fetchrow("SELECT * FROM refunds")
    assert refund["amount_minor"] == 2999 and refund["reason"] is None
