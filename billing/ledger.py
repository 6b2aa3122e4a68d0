"""Settle, the ledger half: approve what passed its hold, and write the ledger lines it earned.

Every line is unique on (source, kind), its source the event id it comes from (or, for cpm, a key
naming the offer, partner and period), so running settle twice, or two at once, never pays twice.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from billing import statements
from billing.fees import FeeLine, cpm_accrual, reversal_lines
from billing.plans import OfferTerms

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
        f"""WITH due AS (  -- one pass: approve, move the rollups' commission, write the lines
               UPDATE conversions SET
                   status = CASE WHEN amount_minor > 0 AND refunded_minor >= amount_minor THEN 'rejected'
                                 ELSE 'approved' END,
                   reason = CASE WHEN amount_minor > 0 AND refunded_minor >= amount_minor THEN 'refunded' END,
                   approved_at = $1
               WHERE status = 'pending' AND hold_until <= $1
               RETURNING event_id, status, merchant_id, partner_id, offer_id, order_id, ts, country, sub1),
           moved AS (
               SELECT partner_id, offer_id, (ts AT TIME ZONE 'UTC')::date AS day, country, sub1,
                      coalesce(sum(k.amount_minor) FILTER (WHERE due.status = 'approved'), 0)::bigint AS approved,
                      coalesce(sum(k.amount_minor) FILTER (WHERE due.status = 'rejected'), 0)::bigint AS rejected
               FROM due LEFT JOIN commissions k ON k.event_id = due.event_id
               GROUP BY 1, 2, 3, 4, 5),
           rolled AS (
               UPDATE rollups r SET
                   commission_pending_minor = r.commission_pending_minor - m.approved - m.rejected,
                   commission_approved_minor = r.commission_approved_minor + m.approved,
                   commission_rejected_minor = r.commission_rejected_minor + m.rejected
               FROM moved m
               WHERE r.partner_id = m.partner_id AND r.day = m.day AND r.offer_id = m.offer_id
                 AND r.country = m.country AND r.sub1 = m.sub1),
           {_APPROVED_LINES}
           SELECT 'status' AS what, status AS kind, count(*) AS n, 0 AS assigned FROM due GROUP BY status
           UNION ALL SELECT 'line', {COUNTED}""",
        now,
        period_end,
    )
    await conn.execute("SELECT set_config('enable_nestloop', $1, true)", previous)
    for row in rows:
        if row["what"] == "line":
            _counted(report, opened, [row])
        elif row["kind"] == "approved":
            report.approved += row["n"]
        else:
            report.rejected_refunded += row["n"]


_COMMISSION_LINES = """SELECT due.event_id::text AS source, k.kind, due.merchant_id, due.partner_id, due.offer_id,
                            k.currency, k.amount_minor, k.basis || coalesce(', order ' || due.order_id, '') AS basis,
                            due.ts AS occurred_at
                     FROM due JOIN commissions k ON k.event_id = due.event_id WHERE due.status = 'approved'"""


def written_lines(select: str, end_param: int) -> str:
    """A CTE `written`: the INSERT of the ledger lines `select` gives (source, kind, merchant_id, partner_id,
    offer_id, currency, amount_minor, basis, occurred_at), each written straight into the open statement
    of its month when there is one and the line is due in it (before the period end, parameter
    `end_param`, and in the statement's own currency); the rest join theirs later in statements.assign.
    A line already written (same source and kind) is skipped: that is what makes settling twice pay
    once. It returns the kind and statement of each line written; COUNTED sums them up by kind."""
    return f"""written AS (
            INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor,
                                      basis, occurred_at, statement_id)
            SELECT x.source, x.kind, x.merchant_id, x.partner_id, x.offer_id, x.currency, x.amount_minor, x.basis,
                   x.occurred_at, s.id
            FROM ({select}) x JOIN merchants m ON m.id = x.merchant_id
            LEFT JOIN statements s ON m.statement_currency = 'own' AND x.occurred_at < ${end_param}
                 AND s.merchant_id = x.merchant_id AND s.partner_id = x.partner_id AND s.currency = x.currency
                 AND s.period_start = date_trunc('month', x.occurred_at AT TIME ZONE 'UTC')::date
                 AND s.status = 'open'
            ON CONFLICT (source, kind) DO NOTHING
            RETURNING kind, statement_id)"""


_APPROVED_LINES = written_lines(_COMMISSION_LINES, end_param=2)


async def reverse_refunds(conn: asyncpg.Connection, report: LedgerReport) -> None:
    """Refunds of approved conversions become negative lines, proportional to the refunded share."""
    rows = await conn.fetch(
        """SELECT r.event_id, r.ts, r.amount_minor, c.event_id AS conversion, c.amount_minor AS sale, c.currency,
                  c.merchant_id, c.partner_id, c.offer_id, c.order_id,
                  coalesce((SELECT sum(p.amount_minor) FROM refunds p WHERE p.conversion_id = r.conversion_id
                            AND (p.ts, p.event_id) < (r.ts, r.event_id)), 0)::bigint AS before
           FROM refunds r JOIN conversions c ON c.event_id = r.conversion_id
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
            currency=row["currency"],
        )
        for line in lines:
            await conn.execute(
                """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor,
                                            basis, occurred_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (source, kind) DO NOTHING""",
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
            report.reversals += 1
        await conn.execute(
            """UPDATE conversions SET status = 'reversed'
               WHERE event_id = $1 AND status = 'approved' AND refunded_minor >= amount_minor""",
            row["conversion"],
        )


async def pay_traffic(
    conn: asyncpg.Connection,
    terms: dict[int, OfferTerms],
    start: dt.datetime,
    end: dt.datetime,
    report: LedgerReport,
    opened: statements.StatementReport,
) -> None:
    """cpc and cpv lines, one per unique non-bot click or non-bot view, for offers whose plans pay them."""
    for offer in terms.values():
        plans = [(None, offer.plan)] + [(p, plan) for p, plan in offer.overrides.items()]
        others = list(offer.overrides)
        for partner, plan in plans:
            for kind, amount, condition in (
                ("cpc", plan.cpc_minor, "e.type = 'click' AND e.is_unique"),
                ("cpv", plan.cpv_minor, "e.type = 'view'"),
            ):
                if not amount:
                    continue
                who = "e.partner_id = $5" if partner is not None else "NOT (e.partner_id = ANY($5::bigint[]))"
                paid = await conn.fetch(
                    "WITH "
                    + written_lines(
                        f"""SELECT e.id::text AS source, '{kind}' AS kind, $2::bigint AS merchant_id, e.partner_id,
                                   e.offer_id, $3::char(3) AS currency, $4::bigint AS amount_minor,
                                   '{kind} at fixed rate' AS basis, e.ts AS occurred_at
                            FROM events e
                            WHERE e.offer_id = $1 AND {condition} AND e.bot_reason IS NULL AND e.refusal IS NULL
                              AND e.partner_id IS NOT NULL AND {who} AND e.ts >= $6 AND e.ts < $7""",
                        end_param=7,
                    )
                    + " SELECT "
                    + COUNTED,
                    offer.id,
                    offer.merchant_id,
                    plan.currency,
                    amount,
                    partner if partner is not None else others,
                    start - CLICK_LOOKBACK,
                    end,
                )
                _counted(report, opened, paid)


async def pay_views_per_mille(
    conn: asyncpg.Connection, terms: dict[int, OfferTerms], start: dt.date, end: dt.date, report: LedgerReport
) -> None:
    """cpm accrues on the period's cumulative views, so no fraction of a cent is lost or invented;
    views counted after an earlier settle of the same period add a line for the difference."""
    period = start.strftime("%Y-%m")
    for offer in terms.values():
        if not offer.plan.cpm_minor and not any(p.cpm_minor for p in offer.overrides.values()):
            continue
        views = await conn.fetch(
            """SELECT partner_id, sum(views)::bigint AS views FROM rollups
               WHERE offer_id = $1 AND day >= $2 AND day < $3 AND partner_id <> 0 GROUP BY partner_id""",
            offer.id,
            start,
            end,
        )
        for row in views:
            plan = offer.plan_for(row["partner_id"])
            if not plan.cpm_minor:
                continue
            key = f"cpm:{offer.id}:{row['partner_id']}:{period}"
            paid = await conn.fetchrow(
                "SELECT coalesce(sum(amount_minor), 0)::bigint AS paid, count(*) AS n FROM ledger_lines"
                " WHERE source LIKE $1",
                key + ":%",
            )
            due = cpm_accrual(plan.cpm_minor, 0, int(row["views"]), plan.rounding) - int(paid["paid"])
            if due:
                await conn.execute(
                    """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency,
                                                amount_minor, basis, occurred_at)
                       VALUES ($1, 'cpm', $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (source, kind) DO NOTHING""",
                    f"{key}:{int(paid['n']) + 1}",
                    offer.merchant_id,
                    row["partner_id"],
                    offer.id,
                    plan.currency,
                    due,
                    f"{row['views']} views in {period} per 1000",
                    dt.datetime.combine(end, dt.time(), dt.UTC) - dt.timedelta(microseconds=1),
                )
                _counted(report, None, [{"kind": "cpm", "n": 1, "assigned": 0}])


COUNTED = "kind, count(*) AS n, count(statement_id) AS assigned FROM written GROUP BY kind"


def _counted(report: LedgerReport, assigned: statements.StatementReport | None, rows: list[Any]) -> None:
    """Add rows of (kind, n, assigned) to the reports: lines written, and how many joined a statement."""
    per_kind: dict[str, int] = defaultdict(int, report.per_kind)
    for row in rows:
        per_kind[row["kind"]] += row["n"]
        report.lines += row["n"]
        if assigned is not None:
            assigned.assigned += row["assigned"]
    report.per_kind = dict(per_kind)
