"""The partner dashboard's figures: the date window (presets or custom, with the previous period of the same
length), the balance (pending, approved, paid, next payout against the threshold), KPIs with their change,
and the daily trend. Money comes from the same records as the statements (billing/figures.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg

from billing.public import figures as billing_figures
from portal import formats
from portal import partner_data as pdata
from portal.errors import invalid
from portal.i18n import N_

PRESETS = {  # labels in English; translated on display (i18n.gettext_)
    "today": N_("Today"),
    "7d": N_("7 days"),
    "30d": N_("30 days"),
    "this_month": N_("This month"),
    "last_month": N_("Last month"),
    "custom": N_("Custom"),
}
METRICS = {"clicks": N_("Clicks"), "conversions": N_("Conversions"), "commission": N_("Commission")}
MAX_DAYS = 366
EPOCH = dt.date(2000, 1, 1)


@dataclass(frozen=True)
class Window:
    preset: str
    since: dt.date  # both days included (UTC)
    until: dt.date

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def previous(self) -> Window:
        """The period of the same length just before, to compare with."""
        until = self.since - dt.timedelta(days=1)
        return Window("previous", until - dt.timedelta(days=self.days - 1), until)

    @property
    def label(self) -> str:
        return formats.period(self.since, self.until, inclusive=True)


def window(preset: str, since: dt.date | None, until: dt.date | None, today: dt.date) -> Window:
    """A preset's days, or the custom from/to (both included, at most 366 days, not after today)."""
    if preset == "custom" or (preset not in PRESETS and (since or until)):
        if since is None:
            raise invalid("from", "enter the first day, e.g. 2026-12-01")
        until = until or today
        if since > until:
            raise invalid("from", "must be on or before the last day")
        if (until - since).days + 1 > MAX_DAYS:
            raise invalid("from", f"a range is at most {MAX_DAYS} days")
        return Window("custom", since, until)
    if preset == "today":
        return Window(preset, today, today)
    if preset in ("7d", "30d"):
        return Window(preset, today - dt.timedelta(days=int(preset[:-1]) - 1), today)
    if preset == "this_month":
        return Window(preset, today.replace(day=1), today)
    if preset == "last_month":
        last = today.replace(day=1) - dt.timedelta(days=1)
        return Window(preset, last.replace(day=1), last)
    raise invalid("range", f"must be one of {', '.join(PRESETS)}")


def earned(m: dict[str, Any]) -> int:
    """Commission earned in a period, minor units: what is pending, approved or paid, less what refunds took."""
    return int(m["commission_pending_minor"] + m["commission_approved_minor"] + m["commission_paid_minor"]) - int(
        m["commission_reversed_minor"]
    )


async def conversions(conn: asyncpg.Connection, partner_id: int, w: Window) -> dict[str, int]:
    """Conversions (actions and sales) not rejected, per UTC day: duplicates and refused ones do not count."""
    rows = await conn.fetch(
        """SELECT ((ts AT TIME ZONE 'UTC')::date)::text AS day, count(*)::bigint AS n FROM conversions
           WHERE partner_id = $1 AND status <> 'rejected' AND kind IN ('action', 'purchase')
             AND ts >= $2 AND ts < $3 GROUP BY 1""",
        partner_id,
        dt.datetime.combine(w.since, dt.time(), dt.UTC),
        dt.datetime.combine(w.until + dt.timedelta(days=1), dt.time(), dt.UTC),
    )
    return {r["day"]: int(r["n"]) for r in rows}


def kpis(stats: dict[str, Any], conv: int) -> dict[str, Any]:
    """The period's key figures: counts, and per currency earned, EPC, AOV (money as text with its currency)."""
    clicks, unique = stats["totals"]["clicks"], stats["totals"]["unique_clicks"]
    money = []
    for m in stats["money"]:
        ccy, made = m["currency"], earned(m)
        money.append(
            {
                "currency": ccy,
                "earned_minor": made,
                "earned": formats.money(made, ccy),
                "epc": formats.ratio_money(made, unique, ccy),
                "aov": formats.ratio_money(m["sales_minor"], m["sales"], ccy),
                "sales": m["sales"],
                "sales_amount": formats.money(m["sales_minor"], ccy),
            }
        )
    return {
        "views": stats["totals"]["views"],
        "clicks": clicks,
        "unique_clicks": unique,
        "bots": stats["totals"]["bots"],
        "conversions": conv,
        "conversion_rate": formats.percent(conv, unique),
        "money": money,
    }


async def balance(conn: asyncpg.Connection, partner_id: int, today: dt.date) -> list[dict[str, Any]]:
    """All time, per currency: pending (on hold), approved and not yet paid, paid; the next payout against the
    partner's minimum payout (a balance under it carries over to the next statement)."""
    found = await billing_figures.commission(conn, billing_figures.Scope(partner_id=partner_id), EPOCH, today, "all")
    partner = await conn.fetchrow("SELECT currency, min_payout_minor FROM partners WHERE id = $1", partner_id)
    first_of_next = (today.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
    closed = await conn.fetch(
        """SELECT currency, number, total_minor FROM statements
           WHERE partner_id = $1 AND status = 'closed' AND payable ORDER BY period_start""",
        partner_id,
    )
    out = []
    for (_, ccy), f in sorted(found.items(), key=lambda item: item[0][1]):
        due = f.approved - f.reversed
        threshold = int(partner["min_payout_minor"]) if partner and partner["currency"] == ccy else 0
        waiting = [r for r in closed if r["currency"] == ccy]
        out.append(
            {
                "closed_total": formats.money(sum(int(r["total_minor"]) for r in waiting), ccy) if waiting else None,
                "closed_numbers": ", ".join(r["number"] for r in waiting),
                "currency": ccy,
                "pending": formats.money(f.pending, ccy),
                "pending_minor": f.pending,
                "approved": formats.money(due, ccy),
                "approved_minor": due,
                "paid": formats.money(f.paid, ccy),
                "paid_minor": f.paid,
                "threshold": formats.money(threshold, ccy),
                "reached": due > 0 and due >= threshold,
                "next_statement": formats.period(today.replace(day=1), first_of_next),
                "closes": formats.period(first_of_next, first_of_next, inclusive=True),
            }
        )
    return out


def series(w: Window, values: dict[str, int]) -> list[tuple[str, int]]:
    return [
        ((w.since + dt.timedelta(days=i)).isoformat(), values.get((w.since + dt.timedelta(days=i)).isoformat(), 0))
        for i in range(w.days)
    ]


async def figures(conn: asyncpg.Connection, partner_id: int, w: Window, metric: str) -> dict[str, Any]:
    """Everything the dashboard shows for window `w` and its previous period."""
    now = await pdata.stats(conn, partner_id, "7d", "day", w.since, w.until)
    prev_w = w.previous()
    before = await pdata.stats(conn, partner_id, "7d", "period", prev_w.since, prev_w.until)
    conv_days = await conversions(conn, partner_id, w)
    conv_before = sum((await conversions(conn, partner_id, prev_w)).values())
    current = kpis(now, sum(conv_days.values()))
    previous = kpis(before, conv_before)
    prev_money = {m["currency"]: m for m in previous["money"]}
    for m in current["money"]:
        m["change"] = formats.change(m["earned_minor"], prev_money.get(m["currency"], {}).get("earned_minor", 0))
    changes = {k: formats.change(current[k], previous[k]) for k in ("clicks", "unique_clicks", "conversions")}
    per_day: dict[str, int] = {}
    currencies = sorted({m["currency"] for r in now["rows"] for m in r["money"]})
    trend_ccy = currencies[0] if currencies else None
    for row in now["rows"]:
        if metric == "clicks":
            per_day[row["key"]] = per_day.get(row["key"], 0) + row["clicks"]
        elif metric == "commission":
            for m in row["money"]:
                if m["currency"] == trend_ccy:
                    per_day[row["key"]] = per_day.get(row["key"], 0) + earned(m)
    if metric == "conversions":
        per_day = conv_days
    return {
        "stats": now,
        "kpi": current,
        "previous": previous,
        "changes": changes,
        "previous_label": prev_w.label,
        "trend": series(w, per_day),
        "trend_currency": trend_ccy,
    }
