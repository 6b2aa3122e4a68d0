"""Mails through the outbox, in the recipient's language: its user's setting, else the merchant's default
(the merchant the mail is about, else the user's own), else English; never the language of whoever caused it."""

from __future__ import annotations

import gettext

import asyncpg

from portal import i18n


async def language(conn: asyncpg.Connection, email: str, merchant_id: int | None = None) -> str:
    """The language to write to `email` in: the setting of its user (or of the user of the partner with that
    address), else the default of `merchant_id` (else of the user's merchant), else English."""
    row = await conn.fetchrow(
        """SELECT (SELECT u.locale FROM users u
                   WHERE u.email = $1 OR u.partner_id = (SELECT id FROM partners WHERE email = $1)
                   ORDER BY u.email = $1 DESC, u.id LIMIT 1) AS locale,
                  coalesce((SELECT default_locale FROM merchants WHERE id = $2),
                           (SELECT m.default_locale FROM users u JOIN merchants m ON m.id = u.merchant_id
                            WHERE u.email = $1)) AS merchant_locale""",
        email,
        merchant_id,
    )
    return i18n.choose(row["locale"], None, row["merchant_locale"])


async def translations(
    conn: asyncpg.Connection, email: str, merchant_id: int | None = None
) -> gettext.NullTranslations:
    """The catalogue to write a mail to `email` with (see language())."""
    return i18n.translations(await language(conn, email, merchant_id))


async def queue(conn: asyncpg.Connection, email: str, subject: str, body: str) -> None:
    """A mail for the outbox (sent by its own worker, at least once)."""
    await conn.execute("INSERT INTO outbox (to_email, subject, body) VALUES ($1, $2, $3)", email, subject, body)
