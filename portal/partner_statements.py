"""A partner's settlement statements as it sees them: the list, one with its lines, and the check that it owns
one (portal/partner_data.py has the rest of what a partner sees)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from billing.public import statements as billing_statements
from kernel.money import format_amount
from portal import formats, i18n
from portal.errors import not_found


def _statement(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    for name in ("period_start", "period_end", "closed_at", "paid_at", "created_at"):
        item[name] = row[name].isoformat() if row[name] else None
    for name in ("total_minor", "carried_in_minor", "carried_out_minor", "lines_minor"):
        if name in item and row[name] is not None:
            label = "lines_total" if name == "lines_minor" else name.removesuffix("_minor")
            item[label] = format_amount(row[name], row["currency"])
    return item


_STATEMENTS = """SELECT s.id, s.number, s.merchant_id, m.name AS merchant, s.currency, s.period_start, s.period_end,
                        s.status, s.carried_in_minor, s.total_minor, s.payable, s.carried_out_minor, s.closed_at,
                        s.paid_at, s.created_at,
                        (SELECT coalesce(sum(coalesce(fx_amount_minor, amount_minor)), 0) FROM ledger_lines l
                         WHERE l.statement_id = s.id)::bigint AS lines_minor,
                        (SELECT count(*) FROM ledger_lines l WHERE l.statement_id = s.id) AS line_count
                 FROM statements s JOIN merchants m ON m.id = s.merchant_id"""


async def statements(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(_STATEMENTS + " WHERE s.partner_id = $1 ORDER BY s.period_start DESC, s.id", partner_id)
    return [_statement(r) for r in rows]


async def statement(conn: asyncpg.Connection, partner_id: int, statement_id: int, page: bool = False) -> dict[str, Any]:
    """One statement with its lines as its exports show them (grouped traffic lines, adjustments marked).
    `page`: its issue date and payment terms in the page's language (the JSON API's stay English)."""
    row = await conn.fetchrow(_STATEMENTS + " WHERE s.partner_id = $1 AND s.id = $2", partner_id, statement_id)
    if row is None:
        raise not_found("statement")
    return await statement_with_lines(conn, row, page)


async def statement_with_lines(conn: asyncpg.Connection, row: asyncpg.Record, page: bool = False) -> dict[str, Any]:
    item = _statement(row)
    doc = await billing_statements.document(conn, row["id"])
    item["issued"], item["payment_terms"] = (_issued(doc), _terms(doc)) if page else (doc.issued, doc.terms)
    item["subtotal"] = format_amount(doc.subtotal_minor, doc.currency)
    item["adjustments"] = format_amount(doc.adjustments_minor, doc.currency)
    item["lines"] = [
        {
            "id": line.line_id,
            "reference": line.event_id,
            "event_id": line.event_id,
            "kind": line.kind,
            "offer": line.offer,
            "basis": line.description,
            "quantity": line.quantity,
            "rate": line.rate,
            "amount_minor": line.amount_minor,
            "amount": format_amount(line.amount_minor, doc.currency),
            "adjustment": line.adjustment,
            "occurred_at": line.occurred_at.isoformat(),
        }
        for line in doc.lines
    ]
    return item


def _issued(doc: Any) -> str:
    """The issue date as the page's language writes a day (the day it closed, UTC); a draft says so."""
    if doc.closed_at is None:
        return i18n.gettext_("not issued (open)")
    return formats.day(doc.closed_at.astimezone(dt.UTC).date())


def _terms(doc: Any) -> str:
    """The merchant's own payment terms as written, then the minimum payout rule in the page's language."""
    rule = i18n.gettext_(
        "Payable once closed when the total reaches the minimum payout of %(amount)s; a smaller balance is carried "
        "over to the next statement."
    ) % {"amount": formats.money(doc.min_payout_minor, doc.currency)}
    own = doc.payment_terms.strip()
    return f"{own} {rule}" if own else rule


async def owns_statement(conn: asyncpg.Connection, partner_id: int, statement_id: int) -> None:
    if not await conn.fetchval("SELECT 1 FROM statements WHERE id = $1 AND partner_id = $2", statement_id, partner_id):
        raise not_found("statement")
