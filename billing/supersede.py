"""An authenticated conversion superseding an unauthenticated one for the same order (docs/conversion-sources.md).

Used by ingest's derive step in the transaction that stores the new conversion: the holder (a stored pending
conversion, or one earlier in the same batch) is rejected `superseded` before the new one is written, so the
one-billable-order index never sees two. Never the other way round (billing/attribution.py, `supersedes`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from billing.attribution import authenticated
from kernel.plans import OfferTerms

# What a stored billable conversion holding an order id must tell when a later one supersedes it.
HOLDER_COLUMNS = """c.offer_id, c.order_id, c.event_id, c.status, c.kind, c.merchant_id, c.partner_id, c.ts,
    c.country, c.sub1, c.amount_minor, c.customer_ref, coalesce(c.authenticated, true) AS authenticated"""


def holder(event: dict[str, Any], terms: OfferTerms | None, at: dt.datetime, index: int) -> dict:
    """A conversion of this batch that now holds its order id, as HOLDER_COLUMNS tells a stored one."""
    return {
        "event_id": event["id"],
        "status": "pending",
        "offer_id": int(event.get("offer") or 0),
        "kind": event["type"],
        "merchant_id": terms.merchant_id if terms else 0,
        "partner_id": int(event.get("partner") or 0),
        "ts": at,
        "country": event.get("country") or "",
        "sub1": (event.get("sub1") or "")[:100],
        "amount_minor": event.get("amount"),
        "customer_ref": str(event["customer"])[:255] if event.get("customer") else None,
        "authenticated": authenticated(event),
        "index": index,  # its row in this batch's conversion rows
    }


async def release(
    conn: asyncpg.Connection,
    holder: dict[str, Any],
    conversion_rows: list[tuple[Any, ...]],
    commission_rows: list[tuple[Any, ...]],
    customer_rows: list[tuple[Any, ...]],
) -> bool:
    """The unauthenticated conversion holding an order id gives it up: rejected `superseded`, without commission
    (it never had a right to one; the portal's figures read commissions by conversion status, billing/figures.py),
    its sale taken out of the rollups, its customer's order taken back. The authenticated conversion then takes
    the order as if it had come first. False when a stored holder was no longer pending (settle approved it
    meanwhile): nothing changed."""
    if "index" in holder:  # of this batch: not stored yet, so its row, lines and customer row change here
        row = list(conversion_rows[holder["index"]])
        row[16], row[17] = "rejected", "superseded"  # status, reason (the order of _CONVERSION_COLUMNS)
        conversion_rows[holder["index"]] = tuple(row)
        commission_rows[:] = [line for line in commission_rows if line[0] != holder["event_id"]]
        customer_rows[:] = [c for c in customer_rows if c[3] != holder["event_id"]]
    else:
        done = await conn.execute(
            """UPDATE conversions SET status = 'rejected', reason = 'superseded'
               WHERE event_id = $1 AND status = 'pending'""",
            holder["event_id"],
        )
        if done.endswith(" 0"):
            return False
        await conn.execute("DELETE FROM commissions WHERE event_id = $1", holder["event_id"])
        if holder["customer_ref"] is not None:
            await conn.execute(
                """UPDATE customers SET orders = greatest(orders - 1, 0), total_minor = total_minor - $4
                   WHERE merchant_id = $1 AND partner_id = $2 AND customer_ref = $3""",
                holder["merchant_id"],
                holder["partner_id"],
                holder["customer_ref"],
                int(holder["amount_minor"] or 0),
            )
    return True


def rollup_key(holder: dict[str, Any]) -> tuple[int, dt.date, int, str, str]:
    """The rollup row the holder was counted in: partner, UTC day, offer, country, sub1."""
    ts = holder["ts"]
    day = (ts if ts.tzinfo else ts.replace(tzinfo=dt.UTC)).astimezone(dt.UTC).date()
    return int(holder["partner_id"]), day, int(holder["offer_id"]), holder["country"] or "", holder["sub1"] or ""


def take_back(counters: list[int], holder: dict[str, Any]) -> None:
    """Undo what the holder added to its rollup row: its sale (rollups hold no commission; billing/derive.py)."""
    if holder["kind"] == "purchase":
        counters[5] -= 1
        counters[6] -= int(holder["amount_minor"] or 0)
