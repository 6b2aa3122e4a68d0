"""cps volume tiers through ingest: what counts (billable sales of the partner and offer earlier in the same UTC
month, by number or by amount in the offer's currency), the same however the sales are batched."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import pytest

from billing.derive import Deriver
from tests.factories import Programme, programme

PLAN = {"cps_percent": "5", "tiers": [{"percent": "7", "min_sales": 2}, {"percent": "9", "min_amount": 30000}]}
START = dt.datetime(2025, 3, 31, 20, tzinfo=dt.UTC)


def _sale(prog: Programme, hours: float, order: str, amount: int, currency: str = "USD") -> dict[str, Any]:
    ts = int((START + dt.timedelta(hours=hours)).timestamp() * 1000)
    return {
        "id": str(uuid.uuid4()),
        "ts": ts,
        "type": "purchase",
        "link": prog.link_id,
        "partner": prog.partner_id,
        "offer": prog.offer_id,
        "click_id": "k" * 38,
        "order_id": order,
        "amount": amount,
        "currency": currency,
    }


@pytest.mark.parametrize("batches", ["one", "each"])
async def test_tiers_count_earlier_sales_of_the_month_in_the_offers_currency(db: asyncpg.Connection, batches: str):
    prog = await programme(db, fee_plan=PLAN)
    sales = [
        _sale(prog, 0, "a", 10000),  # March: does not count for April
        _sale(prog, 5, "b", 10000),  # April 1st: the first of the month, 5%
        _sale(prog, 6, "c", 50000, "EUR"),  # 1 sale before it: 5%; counts as a sale, not as amount (EUR)
        _sale(prog, 7, "d", 10000),  # 2 sales before: 7%; amount before 10,000 USD minor units
        _sale(prog, 8, "e", 20000),  # 3 before, amount 20,000: still 7%
        _sale(prog, 9, "e", 20000),  # a duplicate order: rejected, counts for nothing
        _sale(prog, 10, "f", 10000),  # amount before 40,000 >= 30,000: 9%
    ]
    deriver = Deriver()
    groups = [sales] if batches == "one" else [[sale] for sale in sales]
    for group in groups:
        async with db.transaction():
            await deriver(db, group)
    rows = await db.fetch(
        """SELECT c.order_id, c.status, k.amount_minor, k.basis FROM conversions c
           LEFT JOIN commissions k ON k.event_id = c.event_id ORDER BY c.ts"""
    )
    assert [(r["order_id"], r["status"], r["amount_minor"]) for r in rows] == [
        ("a", "pending", 500),
        ("b", "pending", 500),
        ("c", "pending", 2500),
        ("d", "pending", 700),
        ("e", "pending", 1400),
        ("e", "rejected", None),
        ("f", "pending", 900),
    ]
    assert rows[3]["basis"] == "7% of 100.00 USD, tier from 2 sales"
    assert rows[6]["basis"] == "9% of 100.00 USD, tier from 300.00 USD"
