"""The review of held conversions (billing/fraud.py): the operator approves or rejects one, with a reason;
an unresolved hold expires by its offer's `on_expiry`. SQL only; the portal checks who may ask.

Approved, a held conversion becomes `pending` and follows its offer's lock period like any other (settle
approves it once `hold_until` has passed); rejected, it is `rejected` with reason `fraud_rejected` (or
`hold_expired`), and the operator's words are kept in `review_note`. Each decision is audited by its caller.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

DECISIONS = ("approve", "reject")


class ReviewError(Exception):
    """`code`: not_found (no such held conversion in scope) or not_held (it was decided already)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


async def decide(
    conn: asyncpg.Connection,
    event_id: str,
    decision: str,
    note: str,
    actor: str,
    merchant_id: int | None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Approve or reject one held conversion of `merchant_id` (None: any merchant); returns its new state."""
    if decision not in DECISIONS:
        raise ValueError(decision)
    now = now or dt.datetime.now(dt.UTC)
    row = await conn.fetchrow(
        """SELECT event_id, status, held_reason, merchant_id FROM conversions
           WHERE event_id = $1::uuid AND ($2::bigint IS NULL OR merchant_id = $2) FOR UPDATE""",
        event_id,
        merchant_id,
    )
    if row is None:
        raise ReviewError("not_found", "no such conversion")
    if row["status"] != "held":
        raise ReviewError("not_held", f"the conversion is {row['status']}, not held: it was decided already")
    status, reason = ("pending", None) if decision == "approve" else ("rejected", "fraud_rejected")
    await conn.execute(
        """UPDATE conversions SET status = $2, reason = $3, reviewed_by = $4, reviewed_at = $5, review_note = $6
           WHERE event_id = $1""",
        row["event_id"],
        status,
        reason,
        actor,
        now,
        note,
    )
    return {
        "event_id": str(row["event_id"]),
        "merchant_id": row["merchant_id"],
        "status": status,
        "reason": reason,
        "held_reason": row["held_reason"],
        "reviewed_by": actor,
        "reviewed_at": now,
        "review_note": note,
    }


async def expire(conn: asyncpg.Connection, now: dt.datetime) -> dict[str, int]:
    """Holds past `held_until`: approved (become pending) or rejected `hold_expired`, by the offer's on_expiry."""
    rows = await conn.fetch(
        """UPDATE conversions c SET
               status = CASE WHEN o.fraud_rules->>'on_expiry' = 'approve' THEN 'pending' ELSE 'rejected' END,
               reason = CASE WHEN o.fraud_rules->>'on_expiry' = 'approve' THEN NULL ELSE 'hold_expired' END,
               reviewed_by = 'expiry', reviewed_at = $1,
               review_note = 'the hold expired unresolved'
           FROM offers o
           WHERE o.id = c.offer_id AND c.status = 'held' AND c.held_until <= $1
           RETURNING c.status""",
        now,
    )
    counts = {"approved": 0, "rejected": 0}
    for r in rows:
        counts["approved" if r["status"] == "pending" else "rejected"] += 1
    return counts
