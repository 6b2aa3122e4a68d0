"""What an operator reads of its programme and sets beside it: products and wholesale prices, currency rates,
the conversions that came in, reports, statements and the audit log (portal/operator_data.py has the rest)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from billing.public import figures
from billing.public import statements as billing_statements
from kernel.money import format_amount
from portal import notifications, partner_data, validate
from portal.auth import Principal
from portal.errors import ApiError, invalid, not_found
from portal.operator_data import audit, in_scope, iso_row, scope_merchant

# -- products, wholesale prices, currency rates ---------------------------------------------------


async def products(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = in_scope(who, "p.merchant_id")
    rows = await conn.fetch(
        f"""SELECT p.merchant_id, p.sku, p.name, w.amount_minor AS wholesale_minor, w.currency, w.valid_from
            FROM products p LEFT JOIN LATERAL (
                SELECT amount_minor, currency, valid_from FROM prices WHERE merchant_id = p.merchant_id AND sku = p.sku
                  AND kind = 'wholesale' AND valid_from <= now() ORDER BY valid_from DESC, id DESC LIMIT 1) w ON true
            WHERE {where} ORDER BY p.merchant_id, p.sku""",
        *args,
    )
    return [
        iso_row({**dict(r), "wholesale": format_amount(r["wholesale_minor"], r["currency"]) if r["currency"] else None})
        for r in rows
    ]


async def set_product(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """Create or rename a product and record a new wholesale price version from now (or `valid_from`).
    `wholesale` is the decimal text the API, pages and command line take ("12.50")."""
    merchant_id = scope_merchant(who, values.get("merchant_id"))
    wholesale_minor = validate.money("wholesale", values["wholesale"], values["currency"])
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO products (merchant_id, sku, name) VALUES ($1, $2, $3)
               ON CONFLICT (merchant_id, sku) DO UPDATE SET name = EXCLUDED.name""",
            merchant_id,
            values["sku"],
            values["name"],
        )
        await conn.execute(
            """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency, valid_from)
               VALUES ($1, $2, 'wholesale', $3, $4, coalesce($5, now()))""",
            merchant_id,
            values["sku"],
            wholesale_minor,
            values["currency"],
            values.get("valid_from"),
        )
        await audit(conn, who, merchant_id, "set_price", "product", values["sku"], values)
    return {"merchant_id": merchant_id, "sku": values["sku"]}


async def rates(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = in_scope(who, "merchant_id")
    rows = await conn.fetch(
        f"""SELECT id, merchant_id, base, quote, rate, valid_from FROM currency_rates WHERE {where}
            ORDER BY valid_from DESC, id DESC""",
        *args,
    )
    return [iso_row(dict(r)) for r in rows]


async def add_rate(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    merchant_id = scope_merchant(who, values.get("merchant_id"))
    if values["base"] == values["quote"]:
        raise invalid("quote", "must differ from base")
    async with conn.transaction():
        rate_id = await conn.fetchval(
            """INSERT INTO currency_rates (merchant_id, base, quote, rate, valid_from)
               VALUES ($1, $2, $3, $4, coalesce($5, now())) RETURNING id""",
            merchant_id,
            values["base"],
            values["quote"],
            values["rate"],
            values.get("valid_from"),
        )
        await audit(conn, who, merchant_id, "create", "currency_rate", rate_id, values)
    return {
        "id": rate_id,
        "merchant_id": merchant_id,
        "base": values["base"],
        "quote": values["quote"],
        "rate": str(values["rate"]),
    }


# -- conversions: what came in, by which channel, and why some were refused ------------------------


async def conversions(
    conn: asyncpg.Connection, who: Principal, status: str | None, reason: str | None, limit: int
) -> dict[str, list[dict[str, Any]]]:
    """The latest conversions of the operator's offers with their channel and status (a refused one with its
    code: source_not_allowed, superseded, duplicate_order, ...), and refunds with why one did not count."""
    where, args = in_scope(who, "o.merchant_id")
    n = len(args)
    rows = await conn.fetch(
        f"""SELECT c.event_id::text AS event_id, c.ts, c.kind, c.offer_id, c.partner_id, c.order_id, c.action,
                   c.amount_minor, coalesce(c.currency, o.currency) AS currency, c.status, c.reason, c.via,
                   c.authenticated
            FROM conversions c JOIN offers o ON o.id = c.offer_id
            WHERE {where} AND (${n + 1}::text IS NULL OR c.status = ${n + 1})
              AND (${n + 2}::text IS NULL OR c.reason = ${n + 2})
            ORDER BY c.ts DESC LIMIT ${n + 3}""",
        *args,
        status,
        reason,
        limit,
    )
    refunds = await conn.fetch(
        f"""SELECT r.event_id::text AS event_id, r.ts, r.offer_id, r.order_id, r.amount_minor,
                   coalesce(r.currency, o.currency) AS currency, r.reason, r.conversion_id IS NOT NULL AS applied
            FROM refunds r JOIN offers o ON o.id = r.offer_id
            WHERE {where} AND (${n + 1}::text IS NULL OR r.reason = ${n + 1})
            ORDER BY r.ts DESC LIMIT ${n + 2}""",
        *args,
        reason,
        limit,
    )

    def money(row: asyncpg.Record) -> dict[str, Any]:
        item = iso_row(dict(row))
        minor = item.pop("amount_minor")
        item["amount"] = format_amount(minor, row["currency"]) if minor is not None else None
        return item

    return {"conversions": [money(r) for r in rows], "refunds": [money(r) for r in refunds]}


# -- reports, statements, audit -------------------------------------------------------------------


async def _names(conn: asyncpg.Connection, table: str, ids: list[int]) -> dict[str, str]:
    rows = await conn.fetch(f"SELECT id, name FROM {table} WHERE id = ANY($1::bigint[])", ids) if ids else []
    return {str(r["id"]): r["name"] for r in rows}


REPORT_GROUPS = ("partner_offer", "partner", "offer", "day", "sub1", "country", "period")


async def report(
    conn: asyncpg.Connection, who: Principal, since: dt.date, group: str = "partner_offer", until: dt.date | None = None
) -> list[dict[str, Any]]:
    """The programme by partner and offer (or another `group`): traffic from the rollups, sales and commission
    per currency from the records statements are made of (billing/figures.py), as partners see theirs."""
    until = until or dt.datetime.now(dt.UTC).date()
    own = who.merchant_scope()
    counts = await partner_data.traffic_counts(
        conn,
        "($1::bigint IS NULL OR o.merchant_id = $1) AND r.partner_id <> 0 AND r.day >= $2 AND r.day <= $3",
        [own, since, until],
        group,
    )
    money = await figures.commission(conn, figures.Scope(merchant_id=own), since, until, group)
    rows, _, _ = partner_data.assemble(counts, money)
    ids = [int(part) for row in rows for part in row["key"].split(":") if part.isdigit()]
    partners = await _names(conn, "partners", ids if group in ("partner_offer", "partner") else [])
    offers = await _names(conn, "offers", ids if group in ("partner_offer", "offer") else [])
    for row in rows:
        key = row["key"]
        if group == "partner_offer":
            partner_id, offer_id = key.split(":")
            row.update(partner_id=int(partner_id), partner=partners.get(partner_id, ""))
            row.update(offer_id=int(offer_id), offer=offers.get(offer_id, ""))
        elif group == "partner":
            row.update(partner_id=int(key), partner=partners.get(key, ""))
        elif group == "offer":
            row.update(offer_id=int(key), offer=offers.get(key, ""))
    return rows


async def statements(conn: asyncpg.Connection, who: Principal, period_start: dt.date | None) -> list[dict]:
    where, args = in_scope(who, "s.merchant_id")
    rows = await conn.fetch(
        f"""SELECT s.id, s.number, s.merchant_id, s.partner_id, p.name AS partner, s.currency, s.period_start,
                   s.period_end, s.status, s.total_minor, s.payable, s.carried_out_minor, s.closed_at, s.paid_at
            FROM statements s JOIN partners p ON p.id = s.partner_id
            WHERE {where} AND (${len(args) + 1}::date IS NULL OR s.period_start = ${len(args) + 1})
            ORDER BY s.period_start DESC, s.number""",
        *args,
        period_start,
    )
    return [iso_row(dict(r)) for r in rows]


async def owns_statement(conn: asyncpg.Connection, who: Principal, statement_id: int) -> int:
    where, args = in_scope(who, "merchant_id")
    merchant_id = await conn.fetchval(
        f"SELECT merchant_id FROM statements WHERE {where} AND id = ${len(args) + 1}", *args, statement_id
    )
    if merchant_id is None:
        raise not_found("statement")
    return merchant_id


async def finish_statement(
    conn: asyncpg.Connection, who: Principal, statement_id: int, action: str, sealer: Any = None
) -> dict:
    """Close a statement (it becomes immutable) or mark a closed one paid; audited. `sealer`: see
    billing/invoices.py (a self-billed invoice prints the partner's sealed VAT number)."""
    merchant_id = await owns_statement(conn, who, statement_id)
    async with conn.transaction():
        now = dt.datetime.now(dt.UTC)
        try:
            if action == "close":
                await billing_statements.close(conn, statement_id, now, sealer)
            else:
                await billing_statements.mark_paid(conn, statement_id, now)
        except billing_statements.StatementError as exc:
            raise ApiError(409, "conflict", str(exc)) from exc
        await audit(conn, who, merchant_id, "close" if action == "close" else "mark_paid", "statement", statement_id)
        if action == "close":
            row = await conn.fetchrow("SELECT partner_id, number FROM statements WHERE id = $1", statement_id)
            await notifications.notify(
                conn,
                row["partner_id"],
                "statement_ready",
                {"number": row["number"]},
                f"/statements/{statement_id}",
                merchant_id,
            )
    return {"id": statement_id, "status": "closed" if action == "close" else "paid"}


async def audit_log(conn: asyncpg.Connection, who: Principal, limit: int) -> list[dict[str, Any]]:
    where, args = in_scope(who, "merchant_id")
    rows = await conn.fetch(
        f"""SELECT id, at, actor_email, merchant_id, action, object_type, object_id, detail FROM audit_log
            WHERE {where} ORDER BY id DESC LIMIT ${len(args) + 1}""",
        *args,
        limit,
    )
    return [iso_row(dict(r)) for r in rows]
