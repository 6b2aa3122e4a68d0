"""What a programme manager sees of its partners: the list with each application's site and promotion methods,
and one partner's page (its figures, links and statements), all within the operator's merchant."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from portal import operator_partners as opartners
from portal import operator_reports as oreports
from portal.auth import Principal
from portal.errors import not_found
from portal.i18n import gettext_


async def listing(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    own = who.merchant_scope()
    rows = await conn.fetch(
        """SELECT p.id, p.name, p.email, p.website, pp.merchant_id, m.name AS merchant, pp.status, pp.site_url,
                  pp.promotion, coalesce(pp.applied_at, pp.created_at) AS since
           FROM partners p JOIN partner_programmes pp ON pp.partner_id = p.id JOIN merchants m ON m.id = pp.merchant_id
           WHERE ($1::bigint IS NULL OR pp.merchant_id = $1)
           ORDER BY pp.status <> 'applied', p.name, p.id""",
        own,
    )
    return [{**dict(r), "since": r["since"].date().isoformat()} for r in rows]


async def detail(conn: asyncpg.Connection, who: Principal, partner_id: int, today: dt.date) -> dict[str, Any]:
    """One partner of the operator's programme: who it is, its figures this month and last, links, statements."""
    programmes = [p for p in await listing(conn, who) if p["id"] == partner_id]
    if not programmes:
        raise not_found("partner")
    first = today.replace(day=1)
    last_month = (first - dt.timedelta(days=1)).replace(day=1)
    figures = {}
    for label, since, until in (
        (gettext_("This month"), first, today),
        (gettext_("Last month"), last_month, first - dt.timedelta(1)),
    ):
        rows = [
            r for r in await oreports.report(conn, who, since, "partner", until) if r.get("partner_id") == partner_id
        ]
        figures[label] = rows[0] if rows else None
    links = [lk for lk in await opartners.links(conn, who) if lk["partner_id"] == partner_id]
    statements = [s for s in await oreports.statements(conn, who, None) if s["partner_id"] == partner_id]
    notes = await conn.fetch(
        """SELECT n.text, n.author_email, n.created_at, m.name AS merchant FROM partner_notes n
           JOIN merchants m ON m.id = n.merchant_id
           WHERE n.partner_id = $1 AND ($2::bigint IS NULL OR n.merchant_id = $2)
           ORDER BY n.created_at DESC, n.id DESC""",
        partner_id,
        who.merchant_scope(),
    )
    return {
        "partner": programmes[0],
        "programmes": programmes,
        "figures": figures,
        "links": links,
        "statements": statements,
        "notes": [{**dict(n), "created_at": n["created_at"].isoformat()} for n in notes],
    }


async def add_note(conn: asyncpg.Connection, who: Principal, partner_id: int, merchant_id: int, text: str) -> None:
    """A note on a partner of the operator's programme (the caller checked the partner is in its tenant)."""
    await conn.execute(
        "INSERT INTO partner_notes (merchant_id, partner_id, author_email, text) VALUES ($1, $2, $3, $4)",
        merchant_id,
        partner_id,
        who.email,
        text,
    )


async def listed(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    """Each of the operator's merchants and whether partners can find it in the marketplace."""
    rows = await conn.fetch(
        "SELECT id, name, listed FROM merchants WHERE ($1::bigint IS NULL OR id = $1) ORDER BY name",
        who.merchant_scope(),
    )
    return [dict(r) for r in rows]
