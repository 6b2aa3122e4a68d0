"""Billing's half of conversion sources, on real PostgreSQL through ingest's derive step: an authenticated
conversion supersedes an unauthenticated one for the same order (in one batch or across batches), never the
other way round and never once settled; a refund counts only from an authenticated source."""

from __future__ import annotations

import datetime as dt
import itertools
import time
from typing import Any

import asyncpg
import pytest

from billing import figures
from billing.derive import Deriver
from tests.factories import Programme, programme
from tracker.ids import uuid7

_ms = itertools.count(int(time.time() * 1000))


def _event(prog: Programme, kind: str, via: str, auth: str | None, **fields: Any) -> dict[str, Any]:
    ms = next(_ms)
    event = {
        "id": uuid7(ms),
        "ts": ms,
        "type": kind,
        "offer": prog.offer_id,
        "partner": prog.partner_id,
        "link": prog.link_id,
        "click_id": "AQ-click",
        "country": "",
        "ip": "203.0.113.0",
        "via": via,
        **fields,
    }
    if auth is not None:
        event["auth"] = auth
    if kind == "purchase":
        event.setdefault("currency", "USD")
    return event


def pixel_sale(prog: Programme, order: str, amount: int, **extra: Any) -> dict[str, Any]:
    return _event(prog, "purchase", "pixel", "none", order_id=order, amount=amount, **extra)


def signed_sale(prog: Programme, order: str, amount: int, auth: str = "signature") -> dict[str, Any]:
    return _event(prog, "purchase", "postback", auth, order_id=order, amount=amount)


async def derive(db: asyncpg.Connection, *batches: list[dict[str, Any]]) -> None:
    deriver = Deriver()
    for batch in batches:
        async with db.transaction():
            await deriver(db, batch)


async def _state(db: asyncpg.Connection) -> tuple[list[tuple[Any, ...]], tuple[int, int, int], list[int]]:
    """Conversions; the rollups' sales with the pending commission the portal shows (billing/figures.py: the
    rollups hold no commission); the commission lines."""
    rows = await db.fetch("SELECT via, amount_minor, status, reason FROM conversions ORDER BY ts")
    rollup = await db.fetchrow("SELECT sum(sales)::int AS n, sum(sales_minor)::int AS minor FROM rollups")
    today = dt.datetime.now(dt.UTC).date()
    shown = await figures.commission(db, figures.Scope(), today - dt.timedelta(days=1), today, "all")
    pending = sum(f.pending for f in shown.values())
    commissions = [r["amount_minor"] for r in await db.fetch("SELECT amount_minor FROM commissions ORDER BY 1")]
    return [tuple(r) for r in rows], (rollup["n"], rollup["minor"], pending), commissions


@pytest.mark.parametrize("together", [True, False], ids=["one_batch", "two_batches"])
async def test_a_signed_sale_supersedes_the_pixels_claim(db: asyncpg.Connection, together: bool) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    claim = pixel_sale(prog, "O-1", 100_000_00, customer="cust-1")
    real = signed_sale(prog, "O-1", 80_00)
    if together:
        await derive(db, [claim, real])
    else:
        await derive(db, [claim], [real])
    rows, rollup, commissions = await _state(db)
    assert rows == [("pixel", 100_000_00, "rejected", "superseded"), ("postback", 80_00, "pending", None)]
    assert rollup == (1, 80_00, 8_00)
    assert commissions == [8_00]
    customer = await db.fetchrow("SELECT orders, total_minor FROM customers")
    assert customer is None or (customer["orders"], customer["total_minor"]) == (0, 0)


async def test_never_the_other_way_round(db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await derive(db, [signed_sale(prog, "O-2", 50_00)], [pixel_sale(prog, "O-2", 1_00), pixel_sale(prog, "O-2", 2_00)])
    rows, rollup, _ = await _state(db)
    assert rows == [
        ("postback", 50_00, "pending", None),
        ("pixel", 1_00, "rejected", "duplicate_order"),
        ("pixel", 2_00, "rejected", "duplicate_order"),
    ]
    assert rollup == (1, 50_00, 5_00)


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        ("signature", "token", "first"),  # two authenticated: the first keeps it
        ("none", "token", "second"),  # a token postback is authenticated too
        ("none", "none", "first"),  # two pixels: the first keeps it
        (None, "signature", "first"),  # stored before `auth` existed, via postback: authenticated
    ],
)
async def test_who_keeps_the_order(db: asyncpg.Connection, first: str | None, second: str, winner: str) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    via = {"none": "pixel", "token": "postback", "signature": "postback", None: "postback"}
    a = _event(prog, "purchase", via[first], first, order_id="O-3", amount=10_00)
    b = _event(prog, "purchase", via[second], second, order_id="O-3", amount=20_00)
    await derive(db, [a], [b])
    rows, _, _ = await _state(db)
    statuses = [r[2] for r in rows]
    assert statuses == (["pending", "rejected"] if winner == "first" else ["rejected", "pending"])


async def test_an_old_pixel_event_without_auth_is_unauthenticated(db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    old = _event(prog, "purchase", "cookie", None, order_id="O-4", amount=10_00)
    await derive(db, [old], [signed_sale(prog, "O-4", 30_00)])
    rows, rollup, _ = await _state(db)
    assert [r[2:] for r in rows] == [("rejected", "superseded"), ("pending", None)]
    assert rollup == (1, 30_00, 3_00)


async def test_a_settled_pixel_sale_is_not_superseded(db: asyncpg.Connection) -> None:
    """Once approved (its hold passed, its lines in the ledger) the order is settled: the late signed sale is a
    duplicate. Merchants whose postbacks come late keep pixel purchases off (the default)."""
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await derive(db, [pixel_sale(prog, "O-5", 10_00)])
    await db.execute("UPDATE conversions SET status = 'approved'")
    await derive(db, [signed_sale(prog, "O-5", 10_00)])
    rows, _, _ = await _state(db)
    assert [r[2:] for r in rows] == [("approved", None), ("rejected", "duplicate_order")]


async def test_a_refund_counts_only_from_an_authenticated_source(db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await derive(db, [signed_sale(prog, "O-6", 100_00)])
    pixel_refund = _event(prog, "refund", "pixel", None, order_id="O-6", amount=100_00, currency="USD")
    cookie_refund = _event(prog, "refund", "cookie", "none", order_id="O-6")
    real_refund = _event(prog, "refund", "postback", "signature", order_id="O-6", amount=30_00, currency="USD")
    await derive(db, [pixel_refund, cookie_refund], [real_refund])
    refunds = await db.fetch(
        "SELECT amount_minor, reason, conversion_id IS NOT NULL AS applied FROM refunds ORDER BY ts"
    )
    assert [tuple(r) for r in refunds] == [
        (100_00, "refund_needs_authentication", False),
        (0, "refund_needs_authentication", False),
        (30_00, None, True),
    ]
    assert await db.fetchval("SELECT refunded_minor FROM conversions") == 30_00


@pytest.mark.parametrize("together", [True, False], ids=["one_batch", "two_batches"])
async def test_tiers_do_not_count_a_superseded_sale(db: asyncpg.Connection, together: bool) -> None:
    """A superseded pixel sale is not billable, so the month's tiers (issue 15) do not count it: the signed sale
    that took its order is the partner's first, and the next sale its second, both at the base rate."""
    prog = await programme(db, fee_plan={"cps_percent": "5", "tiers": [{"percent": "9", "min_sales": 2}]})
    claim, real, next_sale = (
        pixel_sale(prog, "O-9", 100_00),
        signed_sale(prog, "O-9", 100_00),
        signed_sale(prog, "O-10", 100_00),
    )
    if together:
        await derive(db, [claim, real, next_sale])
    else:
        await derive(db, [claim], [real], [next_sale])
    rows, _, commissions = await _state(db)
    assert [r[2:] for r in rows] == [("rejected", "superseded"), ("pending", None), ("pending", None)]
    assert commissions == [5_00, 5_00]
