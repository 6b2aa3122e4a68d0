"""Settle, the ledger half: approve what passed its hold, write the lines conversions earned, reverse refunds.

Every line is unique on (source, kind), its source the event id it comes from (for traffic lines, see
billing/traffic.py, a key naming the group), so running settle twice, or two at once, never pays twice.
Each line gets its splits (ledger_splits: by country and sub id) in the same statement, which is what
the portal's figures add up.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from billing import statements
from kernel.fees import FeeLine, reversal_lines

CLICK_LOOKBACK = dt.timedelta(days=45)  # unique clicks this old may still be unpaid (settle not run for a while)


@dataclass
class LedgerReport:
    approved: int = 0
    rejected_refunded: int = 0
    lines: int = 0
    reversals: int = 0
    per_kind: dict[str, int] = field(default_factory=dict)


async def approve(
    conn: asyncpg.Connection,
    now: dt.datetime,
    period_end: dt.datetime,
    report: LedgerReport,
    opened: statements.StatementReport,
) -> None:
    """Pending conversions past their hold become approved (or rejected when refunded in full meanwhile),
    and each approved one's commission lines are written."""
    # First the statements the new lines will join (made now, so that each line is written into its
    # statement in the same pass that approves it): those of the conversions about to be approved.
    await statements.make_statements(
        conn,
        """SELECT c.merchant_id, c.partner_id, k.currency, c.ts AS occurred_at
           FROM conversions c JOIN commissions k ON k.event_id = c.event_id
           JOIN merchants m ON m.id = c.merchant_id AND m.statement_currency = 'own'
           WHERE c.status = 'pending' AND c.hold_until <= $1 AND c.ts < $2
             AND NOT (c.amount_minor > 0 AND c.refunded_minor >= c.amount_minor)""",
        [now, period_end],
        opened,
    )
    # The planner cannot know how many of the UPDATE's returned rows are approved (it guesses one) and
    # would then nest-loop every new line over the statements: hash joins for this one statement.
    previous = await conn.fetchval("SHOW enable_nestloop")
    await conn.execute("SET LOCAL enable_nestloop = off")
    rows = await conn.fetch(
        f"""WITH due AS (  -- one pass: approve, write the lines and their splits
               UPDATE conversions SET
                   status = CASE WHEN amount_minor > 0 AND refunded_minor >= amount_minor THEN 'rejected'
                                 ELSE 'approved' END,
                   reason = CASE WHEN amount_minor > 0 AND refunded_minor >= amount_minor THEN 'refunded' END,
                   approved_at = $1
               WHERE status = 'pending' AND hold_until <= $1
               RETURNING event_id, status, merchant_id, partner_id, offer_id, order_id, ts, country, sub1),
           {_APPROVED_LINES},
           split AS (
               INSERT INTO ledger_splits (line_id, partner_id, offer_id, day, country, sub1, amount_minor)
               SELECT w.id, w.partner_id, w.offer_id, (w.occurred_at AT TIME ZONE 'UTC')::date, due.country,
                      due.sub1, w.amount_minor
               FROM written w JOIN due ON due.event_id::text = w.source)
           SELECT 'status' AS what, status AS kind, count(*) AS n, 0 AS assigned FROM due GROUP BY status
           UNION ALL SELECT 'line', {COUNTED}""",
        now,
        period_end,
    )
    await conn.execute("SELECT set_config('enable_nestloop', $1, true)", previous)
    for row in rows:
        if row["what"] == "line":
            counted(report, opened, [row])
        elif row["kind"] == "approved":
            report.approved += row["n"]
        else:
            report.rejected_refunded += row["n"]


_COMMISSION_LINES = """SELECT due.event_id::text AS source, k.kind, due.merchant_id, due.partner_id, due.offer_id,
                            k.currency, k.amount_minor, k.basis || coalesce(', order ' || due.order_id, '') AS basis,
                            due.ts AS occurred_at, NULL::bigint AS quantity, NULL::bigint AS rate_minor
                     FROM due JOIN commissions k ON k.event_id = due.event_id WHERE due.status = 'approved'"""


def written_lines(select: str, end_param: int) -> str:
    """A CTE `written`: the INSERT of the ledger lines `select` gives (source, kind, merchant_id, partner_id,
    offer_id, currency, amount_minor, basis, occurred_at, quantity, rate_minor), each written straight into
    the open statement of its month when there is one and the line is due in it (before the period end,
    parameter `end_param`, and in the statement's own currency); the rest join theirs later in
    statements.assign. A line already written (same source and kind) is skipped: that is what makes settling
    twice pay once. It returns each line written (id, source, kind, statement_id, partner_id, offer_id,
    occurred_at, amount_minor); COUNTED sums them up by kind."""
    return f"""written AS (
            INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor,
                                      basis, occurred_at, quantity, rate_minor, statement_id)
            SELECT x.source, x.kind, x.merchant_id, x.partner_id, x.offer_id, x.currency, x.amount_minor, x.basis,
                   x.occurred_at, x.quantity, x.rate_minor, s.id
            FROM ({select}) x JOIN merchants m ON m.id = x.merchant_id
            LEFT JOIN statements s ON m.statement_currency = 'own' AND x.occurred_at < ${end_param}
                 AND s.merchant_id = x.merchant_id AND s.partner_id = x.partner_id AND s.currency = x.currency
                 AND s.period_start = date_trunc('month', x.occurred_at AT TIME ZONE 'UTC')::date
                 AND s.status = 'open'
            ON CONFLICT (source, kind) DO NOTHING
            RETURNING id, source, kind, statement_id, partner_id, offer_id, occurred_at, amount_minor)"""


_APPROVED_LINES = written_lines(_COMMISSION_LINES, end_param=2)


async def reverse_refunds(conn: asyncpg.Connection, report: LedgerReport) -> None:
    """Refunds of approved conversions become negative lines, proportional to the refunded share, rounded once
    on the cumulative refunded share as the merchant rounds; each in the conversion's country and sub id."""
    rows = await conn.fetch(
        """SELECT r.event_id, r.ts, r.amount_minor, c.event_id AS conversion, c.amount_minor AS sale, c.currency,
                  c.merchant_id, c.partner_id, c.offer_id, c.order_id, c.country, c.sub1, m.rounding,
                  coalesce((SELECT sum(p.amount_minor) FROM refunds p WHERE p.conversion_id = r.conversion_id
                            AND (p.ts, p.event_id) < (r.ts, r.event_id)), 0)::bigint AS before
           FROM refunds r JOIN conversions c ON c.event_id = r.conversion_id JOIN merchants m ON m.id = c.merchant_id
           WHERE c.status IN ('approved', 'reversed') AND r.amount_minor > 0
             AND NOT EXISTS (SELECT 1 FROM ledger_lines l WHERE l.source = r.event_id::text)
           ORDER BY r.ts, r.event_id"""
    )
    for row in rows:
        originals = await conn.fetch(
            "SELECT kind, amount_minor, currency, basis FROM commissions WHERE event_id = $1 ORDER BY kind",
            row["conversion"],
        )
        lines = reversal_lines(
            [FeeLine(o["kind"], o["amount_minor"], o["currency"], o["basis"]) for o in originals],
            row["amount_minor"],
            row["sale"],
            refunded_before_minor=row["before"],
            mode=row["rounding"],
            currency=row["currency"],
        )
        for line in lines:
            line_id = await conn.fetchval(
                """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor,
                                            basis, occurred_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (source, kind) DO NOTHING RETURNING id""",
                str(row["event_id"]),
                "reversal:" + line.kind,
                row["merchant_id"],
                row["partner_id"],
                row["offer_id"],
                line.currency,
                line.amount_minor,
                f"{line.basis}, order {row['order_id']}",
                row["ts"],
            )
            if line_id is None:
                continue
            await conn.execute(
                """INSERT INTO ledger_splits (line_id, partner_id, offer_id, day, country, sub1, amount_minor)
                   VALUES ($1, $2, $3, ($4::timestamptz AT TIME ZONE 'UTC')::date, $5, $6, $7)""",
                line_id,
                row["partner_id"],
                row["offer_id"],
                row["ts"],
                row["country"],
                row["sub1"],
                line.amount_minor,
            )
            report.reversals += 1
        await conn.execute(
            """UPDATE conversions SET status = 'reversed'
               WHERE event_id = $1 AND status = 'approved' AND refunded_minor >= amount_minor""",
            row["conversion"],
        )


COUNTED = "kind, count(*) AS n, count(statement_id) AS assigned FROM written GROUP BY kind"


def counted(report: LedgerReport, assigned: statements.StatementReport | None, rows: list[Any]) -> None:
    """Add rows of (kind, n, assigned) to the reports: lines written, and how many joined a statement."""
    per_kind: dict[str, int] = defaultdict(int, report.per_kind)
    for row in rows:
        per_kind[row["kind"]] += row["n"]
        report.lines += row["n"]
        if assigned is not None:
            assigned.assigned += row["assigned"]
    report.per_kind = dict(per_kind)
