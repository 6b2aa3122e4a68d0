"""A partner's notifications (approved to a programme, a new offer, a statement ready): a row shown on the
portal and the same words mailed through the outbox, each in its reader's language (docs/i18n.md)."""

from __future__ import annotations

from typing import Any

import asyncpg

from portal import i18n, mails

KINDS = {"approved", "new_offer", "statement_ready", "application"}
# The words of each kind, with its values by name. The row keeps them in English (as the JSON API shows them);
# the page reads the values back out of that text and says it in the reader's language, the mail in the partner's.
MESSAGES = {
    "approved": i18n.N_("%(merchant)s approved you: its offers are open to you."),
    "new_offer": i18n.N_("New offer from %(merchant)s: %(offer)s."),
    "statement_ready": i18n.N_("Statement %(number)s is ready."),
}


PATTERNS = {kind: i18n.reading(message) for kind, message in MESSAGES.items()}


async def notify(
    conn: asyncpg.Connection,
    partner_id: int,
    kind: str,
    params: dict[str, str],
    link: str | None = None,
    merchant_id: int | None = None,
) -> None:
    """Record a notification and queue its mail to the partner's address, in the partner's language (its user's
    setting, else the default of `merchant_id`, the merchant it is about)."""
    assert kind in MESSAGES, kind
    await conn.execute(
        "INSERT INTO notifications (partner_id, kind, text, link) VALUES ($1, $2, $3, $4)",
        partner_id,
        kind,
        (MESSAGES[kind] % params)[:500],
        link,
    )
    email = await conn.fetchval("SELECT email FROM partners WHERE id = $1", partner_id)
    if email:
        t = await mails.translations(conn, email, merchant_id)
        text = t.gettext(MESSAGES[kind]) % params
        await mails.queue(conn, email, text[:200], text + "\n")


def shown(kind: str, text: str) -> str:
    """The notification in the page's language; a text that is not one of MESSAGES (cut short, or written by
    something else) stays as it was written."""
    found = PATTERNS[kind].match(text) if kind in PATTERNS else None
    if found is None:
        return text
    return i18n.gettext_(MESSAGES[kind]) % found.groupdict()


async def latest(conn: asyncpg.Connection, partner_id: int, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT id, kind, text, link, created_at, read_at FROM notifications WHERE partner_id = $1
           ORDER BY created_at DESC, id DESC LIMIT $2""",
        partner_id,
        limit,
    )
    return [{**dict(r), "text": shown(r["kind"], r["text"]), "created_at": r["created_at"].isoformat()} for r in rows]


async def unread(conn: asyncpg.Connection, partner_id: int) -> int:
    return int(
        await conn.fetchval("SELECT count(*) FROM notifications WHERE partner_id = $1 AND read_at IS NULL", partner_id)
    )


async def mark_read(conn: asyncpg.Connection, partner_id: int) -> None:
    await conn.execute("UPDATE notifications SET read_at = now() WHERE partner_id = $1 AND read_at IS NULL", partner_id)
