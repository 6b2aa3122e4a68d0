"""The money the portal shows, read from the records statements are made of, in the currency the statement carries.

Every commission figure (partner stats and orders, the operator's report) is one of five buckets:

- approved: earning lines in the ledger (every fee kind), not yet in a paid statement;
- reversed: what reversal lines took back (a positive amount), not yet in a paid statement;
- paid: all lines (earnings and reversals) of paid statements;
- pending: what settle has not written yet, estimated: the commissions of pending conversions, and the paid
  traffic not yet on a line (unique clicks and billable views less those already paid, at the partner's
  current rates, cpm accrued per offer and day as settle accrues it);
- rejected: commissions of conversions rejected at approval (refunded in full before their hold ended).

Beside them, `held`: the commissions of conversions a fraud rule holds for the operator's review (billing/fraud.py),
in no bucket above until approved (then pending) or rejected (then nowhere).

approved - reversed + paid over a statement's lines is its lines total, to the minor unit: a line is split by
country and sub id (ledger_splits) and its splits add up to it, also converted. A line converted into the
partner's currency counts in that currency; one not yet on a statement of such a merchant, like pending
figures, is estimated at the operator's rate in force now (without one it counts in its own currency, as
its statement will).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg

from billing.plans import load_terms
from kernel import money
from kernel.fees import cpm_accrual
from kernel.plans import OfferTerms

BUCKETS = ("pending", "approved", "reversed", "paid", "rejected")
# group -> the key of a split (x: ledger_splits, s: its statement), of a conversion (c), of a rollup row (r)
_KEYS: dict[str, tuple[str, str, str]] = {
    "day": ("x.day::text", "((c.ts AT TIME ZONE 'UTC')::date)::text", "r.day::text"),
    "offer": ("x.offer_id::text", "c.offer_id::text", "r.offer_id::text"),
    "sub1": ("x.sub1", "c.sub1", "r.sub1"),
    "country": ("x.country", "c.country", "r.country"),
    "period": (
        "to_char(coalesce(s.period_start, x.day), 'YYYY-MM')",
        "to_char(c.ts AT TIME ZONE 'UTC', 'YYYY-MM')",
        "to_char(r.day, 'YYYY-MM')",
    ),
    "partner": ("x.partner_id::text", "c.partner_id::text", "r.partner_id::text"),
    "partner_offer": (
        "x.partner_id || ':' || x.offer_id",
        "c.partner_id || ':' || c.offer_id",
        "r.partner_id || ':' || r.offer_id",
    ),
    "all": ("''", "''", "''"),
}
GROUPS = tuple(_KEYS)


@dataclass(frozen=True)
class Scope:
    """Whose money: one partner (a partner's own view), or one merchant's programme, or every merchant."""

    partner_id: int | None = None
    merchant_id: int | None = None  # None with partner_id None: every merchant (a network operator)

    def where(self, alias: str, merchant: str, first: int) -> tuple[str, list[Any]]:
        if self.partner_id is not None:
            return f"{alias}.partner_id = ${first}", [self.partner_id]
        if self.merchant_id is not None:
            return f"{merchant} = ${first}", [self.merchant_id]
        return f"${first}::bigint IS NULL", [None]


@dataclass
class Figures:
    """One key's money in one currency, minor units."""

    pending: int = 0
    approved: int = 0
    reversed: int = 0
    paid: int = 0
    rejected: int = 0
    held: int = 0  # commissions of conversions a fraud rule holds for review: never paid unless approved
    sales: int = 0  # billable sales in this currency (their own), and their amount
    sales_minor: int = 0

    def add(self, bucket: str, amount: int) -> None:
        if bucket == "reversed":
            self.reversed -= amount  # reversal lines are negative; shown as what was taken back
        else:
            setattr(self, bucket, getattr(self, bucket) + amount)


@dataclass
class _Rates:
    """The operator's rates in force now, per merchant, and each merchant's rounding."""

    rates: dict[tuple[int, str, str], Decimal] = field(default_factory=dict)
    rounding: dict[int, str] = field(default_factory=dict)

    def shown(self, merchant_id: int, currency: str, target: str, amount: int) -> tuple[str, int]:
        rate = self.rates.get((merchant_id, currency, target))
        if rate is None:
            return currency, amount  # no rate: the line stays in its own currency's statement
        return target, money.convert(amount, currency, target, rate, self.rounding.get(merchant_id, "half_even"))


Result = dict[tuple[str, str], Figures]  # (key, currency) -> figures


async def commission(conn: asyncpg.Connection, scope: Scope, since: dt.date, until: dt.date, group: str) -> Result:
    """Every bucket of money of `scope` from `since` to `until` (UTC days, both included), per key of `group`
    and currency. A line counts on the day of what it pays or takes back."""
    split_key, conversion_key, rollup_key = _KEYS[group]
    found: Result = defaultdict(Figures)
    rates = await _rates(conn)
    where, args = scope.where("x", "l.merchant_id", 3)
    rows = await conn.fetch(
        f"""SELECT {split_key} AS key, l.merchant_id, l.currency, l.fx_currency, p.currency AS partner_currency,
                   (l.fx_currency IS NULL AND m.statement_currency = 'partner'
                    AND l.currency <> p.currency) AS estimate,
                   CASE WHEN s.status = 'paid' THEN 'paid' WHEN l.kind LIKE 'reversal:%' THEN 'reversed'
                        ELSE 'approved' END AS bucket,
                   CASE WHEN l.fx_currency IS NULL AND m.statement_currency = 'partner' AND l.currency <> p.currency
                        THEN l.id END AS unit,  -- an estimate is converted line by line, as its statement will be
                   sum(coalesce(x.fx_amount_minor, x.amount_minor))::bigint AS amount
            FROM ledger_splits x JOIN ledger_lines l ON l.id = x.line_id
            JOIN merchants m ON m.id = l.merchant_id JOIN partners p ON p.id = l.partner_id
            LEFT JOIN statements s ON s.id = l.statement_id
            WHERE x.day >= $1 AND x.day <= $2 AND {where}
            GROUP BY 1, 2, 3, 4, 5, 6, 7, 8""",
        since,
        until,
        *args,
    )
    for row in rows:
        currency, amount = row["fx_currency"] or row["currency"], int(row["amount"])
        if row["estimate"]:
            currency, amount = rates.shown(row["merchant_id"], row["currency"], row["partner_currency"], amount)
        found[row["key"], currency].add(row["bucket"], amount)
    where, args = scope.where("c", "c.merchant_id", 3)
    rows = await conn.fetch(
        f"""SELECT {conversion_key} AS key, c.merchant_id, k.currency, p.currency AS partner_currency,
                   (m.statement_currency = 'partner' AND k.currency <> p.currency) AS estimate,
                   c.status AS bucket, sum(k.amount_minor)::bigint AS amount,
                   CASE WHEN m.statement_currency = 'partner' AND k.currency <> p.currency
                        THEN k.event_id::text || k.kind END AS unit  -- converted line by line, as settle will
            FROM conversions c JOIN commissions k ON k.event_id = c.event_id
            JOIN merchants m ON m.id = c.merchant_id JOIN partners p ON p.id = c.partner_id
            WHERE c.status IN ('pending', 'held', 'rejected') AND c.ts >= $1 AND c.ts < $2 AND {where}
            GROUP BY 1, 2, 3, 4, 5, 6, 8""",
        _start(since),
        _start(until + dt.timedelta(days=1)),
        *args,
    )
    for row in rows:
        currency, amount = row["currency"], int(row["amount"])
        if row["estimate"]:
            currency, amount = rates.shown(row["merchant_id"], currency, row["partner_currency"], amount)
        found[row["key"], currency].add(row["bucket"], amount)
    rows = await conn.fetch(
        f"""SELECT {conversion_key} AS key, c.currency, count(*) AS n, sum(c.amount_minor)::bigint AS amount
            FROM conversions c
            WHERE c.kind = 'purchase' AND c.status <> 'rejected' AND c.currency IS NOT NULL
              AND c.ts >= $1 AND c.ts < $2 AND {where}
            GROUP BY 1, 2""",
        _start(since),
        _start(until + dt.timedelta(days=1)),
        *args,
    )
    for row in rows:
        figures = found[row["key"], row["currency"]]
        figures.sales += row["n"]
        figures.sales_minor += int(row["amount"])
    await _pending_traffic(conn, scope, since, until, split_key, rollup_key, rates, found)
    return dict(found)


_LINE_MONEY = """l.merchant_id, l.currency, l.fx_currency, p.currency AS partner_currency,
    (l.fx_currency IS NULL AND m.statement_currency = 'partner' AND l.currency <> p.currency) AS estimate,
    CASE WHEN s.status = 'paid' THEN 'paid' WHEN l.kind LIKE 'reversal:%' THEN 'reversed' ELSE 'approved' END
        AS bucket,
    coalesce(l.fx_amount_minor, l.amount_minor) AS amount
    FROM ledger_lines l JOIN merchants m ON m.id = l.merchant_id JOIN partners p ON p.id = l.partner_id
    LEFT JOIN statements s ON s.id = l.statement_id"""


async def conversions(conn: asyncpg.Connection, event_ids: list[str]) -> dict[str, dict[str, Figures]]:
    """Per conversion, per currency: what it earned (approved or paid lines, or its pending or rejected
    commission), and what its refunds' reversal lines took back; from the same records as `commission`."""
    rates = await _rates(conn)
    found: dict[str, dict[str, Figures]] = defaultdict(lambda: defaultdict(Figures))
    rows = await conn.fetch(
        f"""SELECT l.source AS id, {_LINE_MONEY} WHERE l.source = ANY($1::text[])
            UNION ALL
            SELECT r.conversion_id::text, {_LINE_MONEY} JOIN refunds r ON r.event_id::text = l.source
            WHERE r.conversion_id = ANY($2::uuid[])
            UNION ALL
            SELECT c.event_id::text, c.merchant_id, k.currency, NULL, p.currency,
                   m.statement_currency = 'partner' AND k.currency <> p.currency, c.status, k.amount_minor
            FROM conversions c JOIN commissions k ON k.event_id = c.event_id
            JOIN merchants m ON m.id = c.merchant_id JOIN partners p ON p.id = c.partner_id
            WHERE c.event_id = ANY($2::uuid[]) AND c.status IN ('pending', 'held', 'rejected')""",
        event_ids,
        event_ids,
    )
    for row in rows:
        currency, amount = row["fx_currency"] or row["currency"], int(row["amount"])
        if row["estimate"]:
            currency, amount = rates.shown(row["merchant_id"], row["currency"], row["partner_currency"], amount)
        found[row["id"]][currency].add(row["bucket"], amount)
    return {key: dict(value) for key, value in found.items()}


async def _pending_traffic(
    conn: asyncpg.Connection,
    scope: Scope,
    since: dt.date,
    until: dt.date,
    split_key: str,
    rollup_key: str,
    rates: _Rates,
    found: Result,
) -> None:
    """Unique clicks and billable views no line pays yet, at the partner's current rates: what settle will pay."""
    traffic = await conn.fetch(
        """SELECT id FROM offers WHERE fee_plan ?| array['cpc', 'cpv', 'cpm']
           UNION SELECT offer_id FROM offer_partner_plans WHERE fee_plan ?| array['cpc', 'cpv', 'cpm']"""
    )
    if not traffic:
        return
    terms = {o.id: o for o in (await load_terms(conn, [r["id"] for r in traffic])).values() if _pays_traffic(o)}
    if not terms:
        return
    where, args = scope.where("r", "o.merchant_id", 4)
    counts = await conn.fetch(
        f"""SELECT {rollup_key} AS key, r.partner_id, r.offer_id, r.day, r.country, r.sub1, r.unique_clicks,
                   r.billable_views, o.merchant_id, p.currency AS partner_currency,
                   m.statement_currency = 'partner' AS partner_mode
            FROM rollups r JOIN offers o ON o.id = r.offer_id JOIN merchants m ON m.id = o.merchant_id
            JOIN partners p ON p.id = r.partner_id
            WHERE r.day >= $1 AND r.day <= $2 AND r.offer_id = ANY($3::bigint[]) AND {where}
              AND (r.unique_clicks > 0 OR r.billable_views > 0)""",
        since,
        until,
        list(terms),
        *args,
    )
    if not counts:
        return
    where, args = scope.where("x", "l.merchant_id", 4)
    paid_rows = await conn.fetch(
        f"""SELECT x.partner_id, x.offer_id, x.day, x.country, x.sub1, l.kind, l.rate_minor,
                   sum(x.quantity)::bigint AS q
            FROM ledger_splits x JOIN ledger_lines l ON l.id = x.line_id
            WHERE x.day >= $1 AND x.day <= $2 AND x.offer_id = ANY($3::bigint[]) AND l.kind IN ('cpc', 'cpv', 'cpm')
              AND {where}
            GROUP BY 1, 2, 3, 4, 5, 6, 7""",
        since,
        until,
        list(terms),
        *args,
    )
    paid: dict[tuple[Any, ...], int] = defaultdict(int)  # (partner, offer, day, country, sub1, kind) -> events
    paid_at_rate: dict[tuple[Any, ...], int] = defaultdict(int)  # (partner, offer, day, kind, rate) -> events
    for r in paid_rows:
        paid[r["partner_id"], r["offer_id"], r["day"], r["country"], r["sub1"], r["kind"]] += int(r["q"])
        paid_at_rate[r["partner_id"], r["offer_id"], r["day"], r["kind"], r["rate_minor"]] += int(r["q"])
    days: dict[tuple[int, int, dt.date], list[asyncpg.Record]] = defaultdict(list)
    for row in counts:
        days[row["partner_id"], row["offer_id"], row["day"]].append(row)
    for (partner_id, offer_id, day), rows in days.items():
        plan = terms[offer_id].plan_for(partner_id)
        for kind, rate, column in (
            ("cpc", plan.cpc_minor, "unique_clicks"),
            ("cpv", plan.cpv_minor, "billable_views"),
            ("cpm", plan.cpm_minor, "billable_views"),
        ):
            if not rate:
                continue
            unpaid = [
                max(0, int(r[column]) - paid[partner_id, offer_id, day, r["country"], r["sub1"], kind]) for r in rows
            ]
            if not any(unpaid):
                continue
            if kind == "cpm":  # accrued per offer and day, as settle will, then shared by the rows' views
                before = paid_at_rate[partner_id, offer_id, day, kind, rate]
                amounts = money.allocate(cpm_accrual(rate, before, before + sum(unpaid), plan.rounding), unpaid)
            else:
                amounts = [n * rate for n in unpaid]
            currency, first = plan.currency, rows[0]
            if first["partner_mode"] and currency != first["partner_currency"] and sum(amounts):
                # as settle will: the day's line converted once, its splits sharing the converted amount
                currency, total = rates.shown(first["merchant_id"], currency, first["partner_currency"], sum(amounts))
                amounts = money.allocate(total, amounts)
            for row, amount in zip(rows, amounts, strict=True):
                if amount:
                    found[row["key"], currency].add("pending", amount)


def _pays_traffic(offer: OfferTerms) -> bool:
    plans: Iterable[Any] = [offer.plan, *offer.overrides.values()]
    return any(p.cpc_minor or p.cpv_minor or p.cpm_minor for p in plans)


async def _rates(conn: asyncpg.Connection) -> _Rates:
    rows = await conn.fetch(
        """SELECT DISTINCT ON (merchant_id, base, quote) merchant_id, base, quote, rate FROM currency_rates
           WHERE valid_from <= now() ORDER BY merchant_id, base, quote, valid_from DESC, id DESC"""
    )
    rounding = await conn.fetch("SELECT id, rounding FROM merchants")
    return _Rates(
        {(r["merchant_id"], r["base"], r["quote"]): r["rate"] for r in rows},
        {r["id"]: r["rounding"] for r in rounding},
    )


def _start(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)
