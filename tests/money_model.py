"""The money rules of docs/billing.md ("Fees", "Settle"), written out again from the text, independently of
billing/: what every event earns, what each settle writes, which statement each line joins, and what each
statement totals.

Plain Python on Fractions; it never imports billing code. The property test runs the same history through
the real tracker-to-statement pipeline and compares.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

LOOKBACK = dt.timedelta(days=45)


def rounded(value: Fraction, mode: str) -> int:
    """One rounding, to the nearest minor unit; ties to even, or away from zero (half_up)."""
    if mode == "half_even":
        return round(value)
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def month_of(at: dt.datetime | dt.date) -> dt.date:
    return dt.date(at.year, at.month, 1)


def next_month(month: dt.date) -> dt.date:
    return dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)


@dataclass
class Plan:
    currency: str
    cpc: int = 0
    cpv: int = 0
    cpm: int = 0
    cpa: dict[str, int] = field(default_factory=dict)
    cps: Fraction | None = None
    tiers: list[tuple[Fraction, int | None, int | None]] = field(default_factory=list)  # percent, min sales, amount
    markup: bool = False
    hold: dt.timedelta = dt.timedelta(0)


@dataclass
class Conversion:
    id: str
    offer: int
    partner: int
    kind: str
    at: dt.datetime
    order: str | None
    action: str | None
    click: str | None
    amount: int
    currency: str | None
    status: str = "pending"
    lines: list[tuple[str, int, str]] = field(default_factory=list)  # kind, amount, currency
    refunded: int = 0
    refunds: list[tuple[dt.datetime, str, int]] = field(default_factory=list)  # at, event id, amount taken
    reversed_refunds: set[str] = field(default_factory=set)


@dataclass
class Line:
    partner: int
    currency: str
    amount: int
    month: dt.date  # of what it pays or takes back
    statement: dt.date | None = None  # the period of the statement it joined


class Programme:
    """One merchant's programme, as docs/billing.md says it pays."""

    def __init__(self, rounding: str, min_payout: dict[int, int]) -> None:
        self.rounding = rounding
        self.min_payout = min_payout
        self.plans: dict[tuple[int, int], Plan] = {}  # (offer, partner) -> the plan the partner is paid by
        self.wholesale: dict[str, list[tuple[dt.datetime, int]]] = {}
        self.retail: dict[tuple[int, str], list[tuple[dt.datetime, int]]] = {}
        self.clicks: dict[str, dict[str, Any]] = {}
        self.conversions: list[Conversion] = []
        self.views: list[dict[str, Any]] = []  # traffic events: kind, offer, partner, at, paid kinds
        self.groups: dict[tuple[Any, ...], int] = defaultdict(int)  # (kind, offer, partner, day, rate) -> paid events
        self.lines: list[Line] = []
        self.closed: set[tuple[int, str, dt.date]] = set()  # statements (partner, currency, period) closed
        self.opened: set[tuple[int, str, dt.date]] = set()
        self.paid: set[tuple[int, str, dt.date]] = set()
        self.figures: dict[tuple[int, str, dt.date], dict[str, int]] = {}  # closed statements' totals

    # -- ingest -----------------------------------------------------------------------------------------------

    def traffic(self, event: dict[str, Any]) -> None:
        if event["type"] == "click" and event.get("click_id"):
            self.clicks[event["click_id"]] = event
        self.views.append({**event, "at": _at(event), "paid": set()})

    def convert(self, event: dict[str, Any]) -> None:
        """An action or a purchase arriving: attributed, judged and priced as docs/billing.md says."""
        at, offer, partner = _at(event), event["offer"], event["partner"]
        plan = self.plans[offer, partner]
        click = self.clicks.get(event.get("click_id") or "")
        conversion = Conversion(
            event["id"], offer, partner, event["type"], at, event.get("order_id"), event.get("action"),
            event.get("click_id"), event.get("amount") or 0, event.get("currency"),
        )  # fmt: skip
        self.conversions.append(conversion)
        billable = [c for c in self.conversions[:-1] if c.status != "rejected"]
        if click is not None and click.get("bot"):
            conversion.status = "bot_click"
        elif conversion.order and any(c.offer == offer and c.order == conversion.order for c in billable):
            conversion.status = "duplicate_order"
        elif conversion.kind == "action" and not conversion.order and any(
            c.offer == offer and c.kind == "action" and not c.order and c.click == conversion.click
            and c.action == conversion.action for c in billable
        ):  # fmt: skip
            conversion.status = "duplicate_action"
        if conversion.status != "pending":
            conversion.status = "rejected"
            return
        name = conversion.action or conversion.kind
        if name in plan.cpa:
            conversion.lines.append(("cpa", plan.cpa[name], plan.currency))
        if conversion.kind == "purchase":
            percent = self._percent(plan, conversion)
            if percent is not None:
                cps = rounded(Fraction(conversion.amount) * percent / 100, self.rounding)
                conversion.lines.append(("cps", cps, conversion.currency or plan.currency))
            if plan.markup:
                margin = 0
                for item in event.get("items") or ():
                    wholesale = _in_force(self.wholesale.get(item["sku"]), at)
                    retail = _in_force(self.retail.get((partner, item["sku"])), at)
                    if wholesale is not None and retail is not None and retail >= wholesale:
                        margin += item["qty"] * (retail - wholesale)
                conversion.lines.append(("markup", margin, plan.currency))
        conversion.lines = [line for line in conversion.lines if line[1]]

    def _percent(self, plan: Plan, sale: Conversion) -> Fraction | None:
        """Tiers: the partner's billable sales of the offer earlier in the UTC month, known when the sale arrives."""
        earlier = [
            c for c in self.conversions[:-1]
            if (c.offer, c.partner, c.kind) == (sale.offer, sale.partner, "purchase")
            and c.status in ("pending", "approved")
            and month_of(c.at) == month_of(sale.at) and c.at < sale.at
        ]  # fmt: skip
        sales, amount = len(earlier), sum(c.amount for c in earlier if c.currency == plan.currency)
        chosen = plan.cps
        for percent, min_sales, min_amount in plan.tiers:
            if (min_sales is not None and sales >= min_sales) or (min_amount is not None and amount >= min_amount):
                chosen = percent
        return chosen

    def refund(self, event: dict[str, Any]) -> None:
        for conversion in self.conversions:
            if (
                conversion.offer == event["offer"]
                and conversion.order == event["order_id"]
                and conversion.status != "rejected"
            ):
                taken = min(event["amount"], conversion.amount - conversion.refunded)
                conversion.refunded += taken
                conversion.refunds.append((_at(event), event["id"], taken))
                return

    # -- settle -----------------------------------------------------------------------------------------------

    def settle(self, period: dt.date, now: dt.datetime, close: bool) -> None:
        end = min(dt.datetime.combine(next_month(period), dt.time(), dt.UTC), now)
        for conversion in self.conversions:  # approve what passed its hold; a sale refunded in full is rejected
            plan = self.plans[conversion.offer, conversion.partner]
            if conversion.status == "pending" and conversion.at + plan.hold <= now:
                if conversion.amount > 0 and conversion.refunded >= conversion.amount:
                    conversion.status = "rejected"
                    continue
                conversion.status = "approved"
                for _, amount, currency in conversion.lines:
                    self.lines.append(Line(conversion.partner, currency, amount, month_of(conversion.at)))
        for conversion in sorted(self.conversions, key=lambda c: c.at):  # refunds take back their share
            if conversion.status not in ("approved", "reversed"):
                continue
            before = 0
            for at, refund_id, taken in sorted(conversion.refunds, key=lambda r: (r[0], r[1])):
                after = min(before + taken, conversion.amount)
                if taken and refund_id not in conversion.reversed_refunds:
                    conversion.reversed_refunds.add(refund_id)
                    for _, amount, currency in sorted(conversion.lines):
                        share = rounded(Fraction(amount * after, conversion.amount), self.rounding) - rounded(
                            Fraction(amount * before, conversion.amount), self.rounding
                        )
                        if share:
                            self.lines.append(Line(conversion.partner, currency, -share, month_of(at)))
                before = after
            if conversion.refunded >= conversion.amount and conversion.status == "approved":
                conversion.status = "reversed"
        fresh: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
        start = dt.datetime.combine(period, dt.time(), dt.UTC) - LOOKBACK
        for event in self.views:
            if event.get("bot") or event.get("refusal") or not start <= event["at"] < end:
                continue
            plan = self.plans[event["offer"], event["partner"]]
            kinds = [("cpc", plan.cpc)] if event["type"] == "click" and event.get("unique") else []
            kinds += [("cpv", plan.cpv), ("cpm", plan.cpm)] if event["type"] == "view" else []
            for kind, rate in kinds:
                if rate and kind not in event["paid"]:
                    fresh[kind, event["offer"], event["partner"], event["at"].date(), rate].append(event)
        for group, events in fresh.items():  # one line per offer, day and rate; cpm on the day's running count
            kind, _, partner, day, rate = group
            before, quantity = self.groups[group], len(events)
            if kind == "cpm":
                amount = rounded(Fraction((before + quantity) * rate, 1000), self.rounding) - rounded(
                    Fraction(before * rate, 1000), self.rounding
                )
            else:
                amount = quantity * rate
            if amount == 0:
                continue  # no line yet: these views stay unpaid
            self.groups[group] += quantity
            for event in events:
                event["paid"].add(kind)
            self.lines.append(Line(partner, "USD", amount, month_of(day)))
        self._assign(next_month(period))
        if close:
            self._close(period)

    def _assign(self, before: dt.date) -> None:
        """Each line joins the statement of its month, or, once that one is closed, the next one not closed."""
        for line in self.lines:
            if line.statement is None and line.month < before:
                month = line.month
                while (line.partner, line.currency, month) in self.closed:
                    month = next_month(month)
                line.statement = month
                self.opened.add((line.partner, line.currency, month))

    def _close(self, period: dt.date) -> None:
        """Total = carried in (from the partner's last closed statement) + lines; payable from the minimum payout."""
        for key in sorted(k for k in self.opened if k[2] == period and k not in self.closed):
            partner = key[0]
            earlier = [k for k in self.closed if k[:2] == key[:2] and k[2] < period]
            carried = self.figures[max(earlier, key=lambda k: k[2])]["carried_out"] if earlier else 0
            lines = sum(line.amount for line in self.lines if (line.partner, line.currency, line.statement) == key)
            total = carried + lines
            payable = total > 0 and total >= self.min_payout[partner]
            self.figures[key] = {
                "carried_in": carried,
                "lines": lines,
                "total": total,
                "payable": payable,
                "carried_out": 0 if payable else total,
            }
            self.closed.add(key)

    def pay(self) -> None:
        self.paid |= {key for key, figures in self.figures.items() if figures["payable"]}

    def statement_lines(self) -> dict[tuple[int, str, dt.date], int]:
        totals: dict[tuple[int, str, dt.date], int] = defaultdict(int)
        for line in self.lines:
            if line.statement is not None:
                totals[line.partner, line.currency, line.statement] += line.amount
        return dict(totals)


def _at(event: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromtimestamp(event["ts"] / 1000, dt.UTC)


def _in_force(versions: list[tuple[dt.datetime, int]] | None, at: dt.datetime) -> int | None:
    found = [amount for since, amount in sorted(versions or []) if since <= at]
    return found[-1] if found else None
