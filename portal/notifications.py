"""A partner's notifications (approved to a programme, a new offer, a statement ready): a row shown on the
portal and the same words mailed through the outbox."""

from __future__ import annotations

from typing import Any

import asyncpg

KINDS = {"approved", "new_offer", "statement_ready", "application"}


async def notify(conn: asyncpg.Connection, partner_id: int, kind: str, text: str, link: str | None = None) -> None:
    """Record a notification and queue its mail to the partner's address."""
    assert kind in KINDS, kind
    await conn.execute(
        "INSERT INTO notifications (partner_id, kind, text, link) VALUES ($1, $2, $3, $4)",
        partner_id,
        kind,
        text[:500],
        link,
    )
    email = await conn.fetchval("SELECT email FROM partners WHERE id = $1", partner_id)
    if email:
        await conn.execute(
            "INSERT INTO outbox (to_email, subject, body) VALUES ($1, $2, $3)", email, text[:200], text + "\n"
        )


async def latest(conn: asyncpg.Connection, partner_id: int, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id, kind, text, link, created_at, read_at FROM notifications WHERE partner_id = $1
           ORDER BY created_at DESC, id DESC LIMIT $2""",
        partner_id,
        limit,
    )
    return [{**dict(r), "created_at": r["created_at"].isoformat()} for r in rows]


async def unread(conn: asyncpg.Connection, partner_id: int) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM notifications WHERE partner_id = $1 AND read_at IS NULL", partner_id)
    )


async def mark_read(conn: asyncpg.Connection, partner_id: int) -> None:
    await conn.execute("UPDATE notifications SET read_at = now() WHERE partner_id = $1 AND read_at IS NULL", partner_id)
