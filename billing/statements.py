"""Settle, the statement half: gather ledger lines into partner statements, close them, mark them paid.

One statement per merchant, partner, currency and month. Lines join the open statement of their
period; once that period's statement is closed, late lines and reversals join the next open one as
adjustments. Closing fixes the total (carried in + lines), decides whether it is payable against the
partner's minimum payout (else the balance carries over); the first export of each kind pins its
SHA-256. From then on the database refuses any change but closed -> paid and that pinning.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from billing import exports, invoices
from billing.locales import ENGLISH, N_, Words
from kernel import money
from kernel.sealed import Sealer


class StatementError(ValueError):
    """A statement operation that cannot be done (unknown statement, wrong state)."""


@dataclass
class StatementReport:
    opened: int = 0
    assigned: int = 0
    closed: int = 0
    converted: int = 0  # lines converted into the partner's currency
    unconverted: int = 0  # lines that could not be: no rate for their currency pair (they stay in their own)


def month_bounds(period: str) -> tuple[dt.date, dt.date]:
    """'2026-11' -> (2026-11-01, 2026-12-01); raises ValueError for anything else."""
    try:
        start = dt.datetime.strptime(period, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"a period is written YYYY-MM, not {period!r}") from None
    try:
        end = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    except OverflowError:  # 9999-12 has no month after it
        raise ValueError(f"the last period there can be is 9999-11, not {period!r}") from None
    return start, end


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


async def _open_statement(
    conn: asyncpg.Connection, merchant: int, partner: int, currency: str, start: dt.date, report: StatementReport
) -> asyncpg.Record:
    """The open statement that lines of the period starting at `start` join: that period's, or a later one."""
    while True:
        row = await conn.fetchrow(
            """SELECT id, status, period_start, period_end FROM statements
               WHERE merchant_id = $1 AND partner_id = $2 AND currency = $3 AND period_start = $4""",
            merchant,
            partner,
            currency,
            start,
        )
        if row is None:
            number = await conn.fetchval("SELECT nextval('statement_numbers')")
            min_payout = await conn.fetchval("SELECT min_payout_minor FROM partners WHERE id = $1", partner) or 0
            row = await conn.fetchrow(
                """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end,
                                          min_payout_minor)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (merchant_id, partner_id, currency, period_start) DO NOTHING
                   RETURNING id, status, period_start, period_end""",
                f"CM-{start:%Y-%m}-{number:06d}",
                merchant,
                partner,
                currency,
                start,
                _next_month(start),
                min_payout,
            )
            if row is None:
                continue  # made by a concurrent settle a moment ago: read it
            report.opened += 1
        if row["status"] == "open":
            return row
        start = row["period_end"]  # closed: late lines go to the next period's statement


def _described(line: asyncpg.Record) -> str:
    if line["fx_rate"] is None:
        return line["basis"]
    original = money.format_amount(line["amount_minor"], line["currency"])
    return f"{line['basis']} ({original} {line['currency']} at {line['fx_rate'].normalize():f})"


async def convert(conn: asyncpg.Connection, period_end: dt.date, now: dt.datetime, report: StatementReport) -> None:
    """Lines of merchants that settle in the partner's currency, in another currency: converted at the
    operator's rate in force now (locked on the line as it joins its statement, rounded once, half-even
    or as the merchant rounds). A line without a rate stays in its own currency's statement."""
    rows = await conn.fetch(
        """SELECT l.id, l.merchant_id, l.partner_id, l.currency, l.amount_minor, l.occurred_at,
                  p.currency AS target, m.rounding, r.rate
           FROM ledger_lines l
           JOIN merchants m ON m.id = l.merchant_id AND m.statement_currency = 'partner'
           JOIN partners p ON p.id = l.partner_id AND p.currency <> l.currency
           LEFT JOIN LATERAL (SELECT rate FROM currency_rates c
                              WHERE c.merchant_id = l.merchant_id AND c.base = l.currency AND c.quote = p.currency
                                AND c.valid_from <= $2 ORDER BY c.valid_from DESC, c.id DESC LIMIT 1) r ON true
           WHERE l.statement_id IS NULL AND l.occurred_at < $1""",
        dt.datetime.combine(period_end, dt.time(), dt.UTC),
        now,
    )
    groups: dict[tuple[int, int, str, dt.date], list[tuple[int, int, Any]]] = {}
    for row in rows:
        if row["rate"] is None:
            report.unconverted += 1
            continue
        amount = money.convert(row["amount_minor"], row["currency"], row["target"], row["rate"], row["rounding"])
        month = row["occurred_at"].astimezone(dt.UTC).date().replace(day=1)
        key = (row["merchant_id"], row["partner_id"], row["target"], month)
        groups.setdefault(key, []).append((row["id"], amount, row["rate"]))
    for (merchant, partner, target, month), lines in sorted(groups.items()):
        statement = await _open_statement(conn, merchant, partner, target, month, report)
        result = await conn.execute(
            """UPDATE ledger_lines l SET statement_id = $1, fx_currency = $2, fx_amount_minor = c.amount,
                                         fx_rate = c.rate
               FROM unnest($3::bigint[], $4::bigint[], $5::numeric[]) AS c(id, amount, rate)
               WHERE l.id = c.id AND l.statement_id IS NULL""",
            statement["id"],
            target,
            [line[0] for line in lines],
            [line[1] for line in lines],
            [line[2] for line in lines],
        )
        report.assigned += int(result.split()[-1])
        report.converted += int(result.split()[-1])
        await _convert_splits(conn, {line[0]: line[1] for line in lines})


async def _convert_splits(conn: asyncpg.Connection, converted: dict[int, int]) -> None:
    """A converted line's splits share its converted amount in proportion to their own (largest remainder),
    so the portal's figures by country and sub id add up to the statement in its currency."""
    rows = await conn.fetch(
        """SELECT line_id, country, sub1, amount_minor FROM ledger_splits WHERE line_id = ANY($1::bigint[])
           ORDER BY line_id, country, sub1""",
        list(converted),
    )
    by_line: dict[int, list[asyncpg.Record]] = {}
    for row in rows:
        by_line.setdefault(row["line_id"], []).append(row)
    keys: list[tuple[int, str, str]] = []
    amounts: list[int] = []
    for line_id, splits in by_line.items():
        weights = [abs(split["amount_minor"]) for split in splits]
        shares = (
            money.allocate(converted[line_id], weights)
            if sum(weights)
            else [converted[line_id]] + [0] * (len(splits) - 1)
        )
        keys += [(line_id, split["country"], split["sub1"]) for split in splits]
        amounts += shares
    await conn.execute(
        """UPDATE ledger_splits x SET fx_amount_minor = c.amount
           FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS c(line_id, country, sub1, amount)
           WHERE (x.line_id, x.country, x.sub1) = (c.line_id, c.country, c.sub1)""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        amounts,
    )


async def make_statements(conn: asyncpg.Connection, lines: str, args: list[Any], report: StatementReport) -> None:
    """The month's statement for every (merchant, partner, currency, month) among `lines` (a query giving
    merchant_id, partner_id, currency, occurred_at) that has none yet, numbered in one pass."""
    made = await conn.fetchval(
        f"""WITH made AS (
               INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end,
                                       min_payout_minor)
               SELECT 'CM-' || to_char(g.month, 'YYYY-MM') || '-' || lpad(nextval('statement_numbers')::text, 6, '0'),
                      g.merchant_id, g.partner_id, g.currency, g.month, (g.month + interval '1 month')::date,
                      p.min_payout_minor
               FROM (SELECT DISTINCT merchant_id, partner_id, currency,
                            date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date AS month
                     FROM ({lines}) l) g
               JOIN partners p ON p.id = g.partner_id
               WHERE NOT EXISTS (SELECT 1 FROM statements s WHERE s.merchant_id = g.merchant_id
                                 AND s.partner_id = g.partner_id AND s.currency = g.currency
                                 AND s.period_start = g.month)
               ON CONFLICT (merchant_id, partner_id, currency, period_start) DO NOTHING
               RETURNING 1)
           SELECT count(*) FROM made""",
        *args,
    )
    report.opened += made


async def assign(conn: asyncpg.Connection, period_end: dt.date, report: StatementReport) -> None:
    """Every unassigned line that happened before `period_end` joins its open statement.

    The common case is set-based: the month's statements are made where missing, and lines join the
    open statement of their month in one UPDATE. Lines whose month is already closed (late events,
    reversals) then join the next open statement, group by group.
    """
    end_at = dt.datetime.combine(period_end, dt.time(), dt.UTC)
    await make_statements(
        conn,
        "SELECT merchant_id, partner_id, currency, occurred_at FROM ledger_lines"
        " WHERE statement_id IS NULL AND occurred_at < $1",
        [end_at],
        report,
    )
    result = await conn.execute(
        """UPDATE ledger_lines l SET statement_id = s.id
           FROM statements s
           WHERE l.statement_id IS NULL AND l.occurred_at < $1 AND s.status = 'open'
             AND s.merchant_id = l.merchant_id AND s.partner_id = l.partner_id AND s.currency = l.currency
             AND s.period_start = date_trunc('month', l.occurred_at AT TIME ZONE 'UTC')::date""",
        end_at,
    )
    report.assigned += int(result.split()[-1])
    await _assign_late(conn, period_end, report)


async def _assign_late(conn: asyncpg.Connection, period_end: dt.date, report: StatementReport) -> None:
    """Lines whose month's statement is closed: into the partner's next open statement, as adjustments."""
    groups = await conn.fetch(
        """SELECT merchant_id, partner_id, currency, min(occurred_at) AS first FROM ledger_lines
           WHERE statement_id IS NULL AND occurred_at < $1 GROUP BY 1, 2, 3""",
        dt.datetime.combine(period_end, dt.time(), dt.UTC),
    )
    for group in groups:
        first = group["first"].astimezone(dt.UTC).date().replace(day=1)
        start = first
        while start < period_end:  # one pass per month so each line joins its own month's statement
            end = _next_month(start)
            statement = await _open_statement(
                conn, group["merchant_id"], group["partner_id"], group["currency"], start, report
            )
            result = await conn.execute(
                """UPDATE ledger_lines SET statement_id = $1
                   WHERE statement_id IS NULL AND merchant_id = $2 AND partner_id = $3 AND currency = $4
                     AND occurred_at < $5""",
                statement["id"],
                group["merchant_id"],
                group["partner_id"],
                group["currency"],
                dt.datetime.combine(end, dt.time(), dt.UTC),
            )
            report.assigned += int(result.split()[-1])
            start = end


async def close_period(
    conn: asyncpg.Connection,
    period_start: dt.date,
    now: dt.datetime,
    report: StatementReport,
    sealer: Sealer | None = None,
) -> None:
    """Close every open statement of the period at once. Carry-over chains from earlier periods only (one
    statement per merchant, partner and currency per period), so no statement here feeds another."""
    ids = await conn.fetch(
        "SELECT id FROM statements WHERE period_start = $1 AND status = 'open' ORDER BY id FOR UPDATE", period_start
    )
    report.closed += await _close(conn, [row["id"] for row in ids], now, sealer)


async def close(conn: asyncpg.Connection, statement_id: int, now: dt.datetime, sealer: Sealer | None = None) -> None:
    """Fix the statement's totals and export hashes; the database refuses any later change."""
    status = await conn.fetchrow("SELECT number, status FROM statements WHERE id = $1 FOR UPDATE", statement_id)
    if status is None:
        raise StatementError(f"no statement {statement_id}")
    if status["status"] != "open":
        raise StatementError(f"statement {status['number']} is already {status['status']}")
    await _close(conn, [statement_id], now, sealer)


async def _close(conn: asyncpg.Connection, ids: list[int], now: dt.datetime, sealer: Sealer | None = None) -> int:
    """Close these open (and locked) statements in one UPDATE: carried in from the partner's last closed
    statement before it, total = carried in + lines, payable against the minimum payout (else all of it
    carries out), and what it prints of the parties (names, addresses, payment terms), its layout and its
    language fixed, so a later rename, a changed language setting or a new version of Clickmint never changes
    its bytes. Its language (billing/locales.py): the partner's user's setting (users.locale; with several
    users, the earliest created active one that has chosen a language), else the merchant's default_locale,
    else English."""
    result = await conn.execute(
        """WITH target AS (SELECT * FROM statements WHERE id = ANY($1::bigint[]) AND status = 'open'),
           figures AS (
               SELECT t.id,
                      coalesce((SELECT coalesce(b.carried_out_minor, 0) FROM statements b
                                WHERE b.merchant_id = t.merchant_id AND b.partner_id = t.partner_id
                                  AND b.currency = t.currency AND b.status IN ('closed', 'paid')
                                  AND b.period_start < t.period_start
                                ORDER BY b.period_start DESC LIMIT 1), 0)::bigint AS carried_in,
                      coalesce(sums.total, 0)::bigint AS lines_total,
                      coalesce((SELECT u.locale FROM users u WHERE u.partner_id = t.partner_id AND u.locale IS NOT NULL
                                  AND u.status = 'active' ORDER BY u.created_at, u.id LIMIT 1),
                               m.default_locale, 'en') AS locale,
                      jsonb_build_object('merchant', m.name, 'partner', p.name,
                                         'offers', coalesce(named.offers, '{}'::jsonb), 'layout', $3::int,
                                         'merchant_address', coalesce(m.address, ''),
                                         'partner_address', coalesce(p.address, ''),
                                         'payment_terms', coalesce(m.payment_terms, '')) AS names
               FROM target t
               JOIN merchants m ON m.id = t.merchant_id
               JOIN partners p ON p.id = t.partner_id
               LEFT JOIN (SELECT statement_id, sum(coalesce(fx_amount_minor, amount_minor)) AS total
                          FROM ledger_lines WHERE statement_id = ANY($1::bigint[]) GROUP BY statement_id) sums
                      ON sums.statement_id = t.id
               LEFT JOIN (SELECT u.statement_id, jsonb_object_agg(o.id::text, o.name) AS offers
                          FROM (SELECT DISTINCT statement_id, offer_id FROM ledger_lines
                                WHERE statement_id = ANY($1::bigint[])) u
                          JOIN offers o ON o.id = u.offer_id GROUP BY u.statement_id) named
                      ON named.statement_id = t.id),
           totals AS (SELECT f.*, f.carried_in + f.lines_total AS total FROM figures f)
           UPDATE statements s SET
               carried_in_minor = x.carried_in,
               total_minor = x.total,
               payable = x.total > 0 AND x.total >= s.min_payout_minor,
               carried_out_minor = CASE WHEN x.total > 0 AND x.total >= s.min_payout_minor THEN 0 ELSE x.total END,
               closed_at = $2, status = 'closed', names = x.names, locale = x.locale
           FROM totals x WHERE s.id = x.id""",
        ids,
        now,
        exports.LAYOUT,
    )
    # A self-billing merchant's payable statements are also invoices, numbered in this transaction.
    await invoices.issue(conn, ids, sealer)
    return int(result.split()[-1])


async def export(conn: asyncpg.Connection, statement_id: int, kind: str) -> bytes:
    """The statement as CSV or PDF. A closed statement's first export pins its SHA-256 and keeps its bytes
    (table statement_exports, migration 0020); every later export gives those bytes, whatever has changed
    since in what draws them (translations, CLDR formats, the PDF library). A closed statement first exported
    before its bytes were kept is drawn again and must match its pinned SHA-256 (StatementError if not)."""
    column = "pdf_sha256" if kind == "pdf" else "csv_sha256"
    kept = await conn.fetchrow(
        f"""SELECT e.data, e.sha256, s.{column} AS pinned FROM statement_exports e
            JOIN statements s ON s.id = e.statement_id WHERE e.statement_id = $1 AND e.kind = $2""",
        statement_id,
        kind,
    )
    if kept is not None:
        if kept["pinned"] != kept["sha256"]:  # the database's guards make this unreachable; say so if not
            raise StatementError(f"the kept {kind} export of statement {statement_id} is not the pinned one")
        return bytes(kept["data"])
    doc = await document(conn, statement_id)
    data = exports.statement_pdf(doc) if kind == "pdf" else exports.statement_csv(doc)
    if doc.status == "open":
        return data
    digest = exports.sha256_hex(data)
    pinned = await conn.fetchval(f"SELECT {column} FROM statements WHERE id = $1", statement_id)
    if pinned is None:
        await conn.execute(
            f"UPDATE statements SET {column} = $2 WHERE id = $1 AND {column} IS NULL", statement_id, digest
        )
    elif pinned != digest:
        raise StatementError(f"the {kind} export of a closed statement changed (sha256 {digest}, pinned {pinned})")
    await conn.execute(
        """INSERT INTO statement_exports (statement_id, kind, data, sha256) VALUES ($1, $2, $3, $4)
           ON CONFLICT (statement_id, kind) DO NOTHING""",
        statement_id,
        kind,
        data,
        digest,
    )
    return data


async def mark_paid(conn: asyncpg.Connection, statement_id: int, now: dt.datetime) -> None:
    status = await conn.fetchval("SELECT status FROM statements WHERE id = $1", statement_id)
    if status != "closed":
        raise StatementError(f"only a closed statement can be marked paid (this one is {status or 'missing'})")
    await conn.execute("UPDATE statements SET status = 'paid', paid_at = $2 WHERE id = $1", statement_id, now)


# The language an open statement is drafted in (statements.locale once closed): its partner's first active user
# that chose one, else the merchant's default. Needs `s` (statements) and `m` (its merchant).
_CHOSEN_LOCALE = """coalesce(s.locale, (SELECT u.locale FROM users u WHERE u.partner_id = s.partner_id
                                        AND u.locale IS NOT NULL AND u.status = 'active'
                                      ORDER BY u.created_at, u.id LIMIT 1), m.default_locale)"""


def _layout_and_locale(row: asyncpg.Record, names: dict[str, Any] | None) -> tuple[int, str | None]:
    """An open statement is drawn in the current layout and language; a closed one in those fixed when it closed."""
    if row["status"] == "open":
        return exports.LAYOUT, row["chosen_locale"]
    return int((names or {}).get("layout", 1)), row["locale"]


async def document(conn: asyncpg.Connection, statement_id: int) -> exports.StatementDoc:
    """The statement as the exports render it; a closed one always renders to the same bytes.

    A line is an adjustment when it belongs to an earlier period: it happened before this statement's period
    (a late event), or it reverses a sale of an earlier period. A reversal of a sale of the same period is
    an ordinary line. Statements closed before lines were grouped keep their layout and rule (layout 1)."""
    row = await conn.fetchrow(
        f"""SELECT s.*, m.name AS merchant, p.name AS partner, m.address AS merchant_address,
                  p.address AS partner_address, m.payment_terms,
                  {_CHOSEN_LOCALE} AS chosen_locale
           FROM statements s JOIN merchants m ON m.id = s.merchant_id JOIN partners p ON p.id = s.partner_id
           WHERE s.id = $1""",
        statement_id,
    )
    if row is None:
        raise StatementError(f"no statement {statement_id}")
    lines = await conn.fetch(
        """SELECT l.id, l.occurred_at, l.source, l.kind, l.offer_id, o.name AS offer, l.basis, l.amount_minor,
                  l.currency, l.fx_rate, l.fx_amount_minor, l.quantity, l.rate_minor, c.ts AS sale_at
           FROM ledger_lines l JOIN offers o ON o.id = l.offer_id
           LEFT JOIN refunds r ON l.kind LIKE 'reversal:%' AND r.event_id::text = l.source
           LEFT JOIN conversions c ON c.event_id = r.conversion_id
           WHERE l.statement_id = $1
           ORDER BY l.occurred_at, l.id""",
        statement_id,
    )
    names = orjson.loads(row["names"]) if row["names"] else None  # fixed at close; live while open
    layout, locale = _layout_and_locale(row, names)
    start = dt.datetime.combine(row["period_start"], dt.time(), dt.UTC)

    def earlier(line: asyncpg.Record) -> bool:
        if layout == 1:
            return bool(line["occurred_at"] < start or line["kind"].startswith("reversal"))
        return bool(line["occurred_at"] < start or (line["sale_at"] is not None and line["sale_at"] < start))

    def fixed(key: str) -> str:
        return str(names.get(key, "")) if names else (row[key] or "")

    return exports.StatementDoc(
        number=row["number"],
        merchant=names["merchant"] if names else row["merchant"],
        partner=names["partner"] if names else row["partner"],
        period_start=row["period_start"],
        period_end=row["period_end"],
        currency=row["currency"],
        status="open" if row["status"] == "open" else "closed",  # paid shows as closed: the bytes never change
        closed_at=row["closed_at"],
        carried_in_minor=row["carried_in_minor"],
        min_payout_minor=row["min_payout_minor"],
        layout=layout,
        merchant_address=fixed("merchant_address"),
        partner_address=fixed("partner_address"),
        payment_terms=fixed("payment_terms"),
        invoice=await invoices.document(conn, statement_id),
        locale=locale or "en",
        lines=tuple(
            exports.StatementLine(
                occurred_at=line["occurred_at"],
                event_id=line["source"],
                kind=line["kind"],
                offer=names["offers"].get(str(line["offer_id"]), line["offer"]) if names else line["offer"],
                description=_described(line),
                amount_minor=line["amount_minor"] if line["fx_amount_minor"] is None else line["fx_amount_minor"],
                adjustment=earlier(line),
                quantity=line["quantity"],
                rate=_rate(line) if layout != 1 else None,
                line_id=line["id"],
            )
            for line in lines
        ),
    )


def _rate(line: asyncpg.Record) -> str | None:
    if line["rate_minor"] is None:
        return None
    return money.format_amount(line["rate_minor"], line["currency"])


# The events CSV's column titles: in the statement's language from layout 3 on; its values are machine text.
_DETAIL_TITLES = (N_("Line"), N_("Reference"), N_("Kind"), N_("Date (UTC)"), N_("Event"))


async def detail(conn: asyncpg.Connection, statement_id: int, line_id: int | None = None) -> bytes:
    """The events each line of a statement pays or takes back, as CSV: one row per event (a traffic line's
    events from ledger_line_events; a conversion's or a refund's line: its own event). Its column titles are in
    the statement's language from layout 3 on (English for layouts 1 and 2); the values never change with it."""
    rows = await conn.fetch(
        """SELECT l.id, l.source, l.kind, l.occurred_at, coalesce(e.event_id::text, l.source) AS event_id
           FROM ledger_lines l LEFT JOIN ledger_line_events e ON e.line_id = l.id
           WHERE l.statement_id = $1 AND ($2::bigint IS NULL OR l.id = $2)
           ORDER BY l.occurred_at, l.id, event_id""",
        statement_id,
        line_id,
    )
    state = await conn.fetchrow(
        f"""SELECT s.status, s.names, s.locale, {_CHOSEN_LOCALE} AS chosen_locale
            FROM statements s JOIN merchants m ON m.id = s.merchant_id WHERE s.id = $1""",
        statement_id,
    )
    words = ENGLISH  # no such statement: only the headings
    if state is not None:
        layout, locale = _layout_and_locale(state, orjson.loads(state["names"]) if state["names"] else None)
        words = ENGLISH if layout < 3 else Words(locale or "en")  # layouts 1 and 2: English, as before
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([words._(title) for title in _DETAIL_TITLES])
    for r in rows:
        when = r["occurred_at"].astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        writer.writerow([r["id"], exports.safe_cell(r["source"]), r["kind"], when, exports.safe_cell(r["event_id"])])
    return out.getvalue().encode("utf-8")
