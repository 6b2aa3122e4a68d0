"""Loyalty test set-up: a merchant with a programme on, events as a signed postback sends them, invariants."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import asyncpg
import orjson

from billing.derive import Deriver
from tests.factories import Programme, programme

START = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
RULES = {"unit_minor": 100, "points_per_unit": 1, "actions": {"signup": 50}}


async def shop(
    db: asyncpg.Connection,
    *,
    rules: dict[str, Any] | None = None,
    tiers: dict[str, Any] | None = None,
    expiry_days: int | None = 365,
    policy: str = "clamp",
    hold_days: int = 30,
    enabled: bool = True,
) -> Programme:
    """A merchant, an offer with a partner's link, and a loyalty programme (100 points = 1.00 USD)."""
    prog = await programme(db)
    await db.execute("UPDATE offers SET hold_days = $2 WHERE id = $1", prog.offer_id, hold_days)
    await db.execute(
        """INSERT INTO loyalty_programmes (merchant_id, enabled, currency, value_points, value_minor, expiry_days,
                                           refund_policy, rules, tiers)
           VALUES ($1, $2, 'USD', 100, 100, $3, $4, $5, $6)""",
        prog.merchant_id,
        enabled,
        expiry_days,
        policy,
        orjson.dumps(RULES if rules is None else rules).decode(),
        orjson.dumps(tiers or {}).decode(),
    )
    return prog


def ms(at: dt.datetime) -> int:
    return int(at.timestamp() * 1000)


def sale(
    prog: Programme, customer: str, order: str, amount: int, at: dt.datetime = START, **extra: Any
) -> dict[str, Any]:
    event = {
        "id": str(uuid.uuid4()),
        "ts": ms(at),
        "type": "purchase",
        "link": prog.link_id,
        "partner": prog.partner_id,
        "offer": prog.offer_id,
        "click_id": "k" * 38,
        "order_id": order,
        "amount": amount,
        "currency": "USD",
        "customer": customer,
        "via": "postback",
        "auth": "signature",
    }
    event.update(extra)
    return event


def refund(prog: Programme, order: str, amount: int, at: dt.datetime = START) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "ts": ms(at),
        "type": "refund",
        "offer": prog.offer_id,
        "order_id": order,
        "amount": amount,
        "currency": "USD",
        "via": "postback",
        "auth": "signature",
    }


def action(prog: Programme, customer: str, name: str, at: dt.datetime = START, **extra: Any) -> dict[str, Any]:
    event = {
        "id": str(uuid.uuid4()),
        "ts": ms(at),
        "type": "action",
        "action": name,
        "offer": prog.offer_id,
        "customer": customer,
        "via": "postback",
        "auth": "signature",
    }
    event.update(extra)
    return event


async def ingest(db: asyncpg.Connection, deriver: Deriver, *events: dict[str, Any]) -> None:
    """Store and derive events in one transaction, as ingest's batch does (new events only)."""
    async with db.transaction():
        await deriver(db, [dict(e) for e in events])


async def check_invariants(db: asyncpg.Connection) -> dict[tuple[int, str], int]:
    """Every member: balance = sum of entries = active lots' remaining - debt; lots add up. Returns balances."""
    rows = await db.fetch(
        """SELECT m.merchant_id, m.customer_ref, m.balance, m.debt,
                  (SELECT coalesce(sum(points), 0) FROM loyalty_entries e
                   WHERE e.merchant_id = m.merchant_id AND e.customer_ref = m.customer_ref)::bigint AS entries,
                  (SELECT coalesce(sum(remaining), 0) FROM loyalty_lots l WHERE l.status = 'active'
                   AND l.merchant_id = m.merchant_id AND l.customer_ref = m.customer_ref)::bigint AS remaining
           FROM loyalty_members m"""
    )
    for r in rows:
        assert r["balance"] == r["entries"] == r["remaining"] - r["debt"], dict(r)
    bad = await db.fetch(
        "SELECT * FROM loyalty_lots WHERE remaining + expired > points - cancelled OR reversed > points - cancelled"
    )
    assert not bad, [dict(b) for b in bad]
    return {(r["merchant_id"], r["customer_ref"]): r["balance"] for r in rows}


async def balance(db: asyncpg.Connection, prog: Programme, customer: str) -> int:
    return int(
        await db.fetchval(
            "SELECT balance FROM loyalty_members WHERE merchant_id = $1 AND customer_ref = $2",
            prog.merchant_id,
            customer,
        )
    )
