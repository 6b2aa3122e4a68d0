"""Fee models: the commission lines one tracked event earns a partner, and the lines a refund takes back."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Any, NamedTuple

from kernel.money import ROUNDING, format_amount, normalize_currency, round_minor
from kernel.pricing import (
    FeeError,
    PriceVersion,
    Tier,
    check_minor,
    check_percent,
    check_tiers,
    price_at,
    tier_for,
)

__all__ = [
    "KINDS",
    "Commission",
    "FeeError",
    "FeeEvent",
    "FeeLine",
    "FeePlan",
    "Item",
    "PlanOverride",
    "PriceVersion",
    "Tier",
    "commission",
    "commission_lines",
    "cpm_accrual",
    "effective_plan",
    "estimate",
    "price_at",
    "reversal_lines",
    "tier_for",
]

KINDS = frozenset({"view", "click", "action", "purchase"})


class Item(NamedTuple):
    """One line of a purchase: `qty` units of `sku` sold at `unit_price_minor` each."""

    sku: str
    qty: int
    unit_price_minor: int


@dataclass(frozen=True, slots=True)
class FeeLine:
    """One commission (or, negative, reversal) line: what it pays, in which currency, and why in words."""

    kind: str  # "cpm", "cpv", "cpc", "cpa", "cps" or "markup"
    amount_minor: int
    currency: str
    basis: str  # e.g. "7.5% of 129.99 USD"


@dataclass(frozen=True)
class FeePlan:
    """How an offer pays its partners: every model that is set adds its own line (cpa and cps together: a hybrid)."""

    currency: str  # of every fixed amount and price below; cps lines are in the sale's currency
    cpm_minor: int | None = None  # per thousand non-bot views
    cpv_minor: int | None = None  # per non-bot view
    cpc_minor: int | None = None  # per unique, non-bot click
    # Per action name; a purchase sent without one counts as the action "purchase".
    cpa_minor: Mapping[str, int] = field(default_factory=dict)
    cps_percent: Decimal | None = None  # percent of the sale amount
    cps_tiers: tuple[Tier, ...] = ()  # volume tiers, lowest first; a reached tier replaces cps_percent
    # Markup: the merchant's wholesale and the partner's retail price of each sku, versioned. An item without
    # both in force (or with retail below wholesale) earns nothing, and the sale's notes say why.
    wholesale: Mapping[str, tuple[PriceVersion, ...]] = field(default_factory=dict)
    retail: Mapping[str, tuple[PriceVersion, ...]] = field(default_factory=dict)
    rounding: str = "half_even"  # or "half_up", as the merchant's plan says

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "currency", normalize_currency(self.currency))
        for name in ("cpm_minor", "cpv_minor", "cpc_minor"):
            if getattr(self, name) is not None:
                check_minor(getattr(self, name), name)
        put(self, "cpa_minor", _freeze(self.cpa_minor, lambda name, value: check_minor(value, f"cpa_minor[{name}]")))
        if self.cps_percent is not None:
            put(self, "cps_percent", check_percent(self.cps_percent))
        put(self, "cps_tiers", check_tiers(self.cps_tiers))
        put(self, "wholesale", _freeze(self.wholesale, _check_versions))
        put(self, "retail", _freeze(self.retail, _check_versions))
        if self.rounding not in ROUNDING:
            raise FeeError("invalid_plan", f"rounding must be one of {sorted(ROUNDING)}, not {self.rounding!r}")


@dataclass(frozen=True, slots=True)
class Commission:
    """What one event earns: at most one line per kind, and notes on what earns nothing and why."""

    lines: tuple[FeeLine, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class PlanOverride:
    """A partner's exceptions to an offer's plan: None, or a key left out of a mapping, keeps the offer's value."""

    cpm_minor: int | None = None
    cpv_minor: int | None = None
    cpc_minor: int | None = None
    cpa_minor: Mapping[str, int] = field(default_factory=dict)  # merged by action name
    cps_percent: Decimal | None = None
    cps_tiers: tuple[Tier, ...] | None = None  # replaces the whole ladder; () removes it
    wholesale: Mapping[str, tuple[PriceVersion, ...]] = field(default_factory=dict)  # merged by sku
    retail: Mapping[str, tuple[PriceVersion, ...]] = field(default_factory=dict)  # merged by sku


@dataclass(frozen=True)
class FeeEvent:
    """The facts about one tracked event that fees depend on, with the period counters that tiers and cpm need."""

    kind: str  # "view", "click", "action" or "purchase"
    currency: str | None = None  # of amount_minor and of the items' prices; a purchase needs one
    action: str = ""  # action name (lead, signup...); empty on a purchase means "purchase"
    amount_minor: int = 0  # sale amount
    items: tuple[tuple[str, int, int], ...] = ()  # (sku, qty, unit price) triples, Item or plain
    occurred_at: datetime | None = None  # picks the price versions in force; needed by markup
    unique: bool = True  # first click of this visitor on this link in the uniqueness window
    bot: bool = False  # views and clicks by bots are counted apart and never paid
    views_before: int = 0  # non-bot views of this partner and offer already accrued in the period
    sales_before: int = 0  # approved sales of this partner and offer in the period before this one
    amount_before_minor: int = 0  # their total, in the plan's currency

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise FeeError("invalid_event", f"kind must be one of {sorted(KINDS)}, not {self.kind!r}")
        if self.currency is not None:
            object.__setattr__(self, "currency", normalize_currency(self.currency))
        elif self.kind == "purchase":
            raise FeeError("invalid_event", "a purchase needs the currency of its amount")
        for name in ("amount_minor", "views_before", "sales_before", "amount_before_minor"):
            check_minor(getattr(self, name), name, "invalid_event")
        items = tuple(Item(*item) for item in self.items)
        for sku, qty, unit_price in items:
            if not isinstance(sku, str) or not sku or isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                raise FeeError("invalid_event", f"an item needs a sku and a positive int qty: {sku!r} x {qty!r}")
            check_minor(unit_price, "unit_price_minor", "invalid_event")
        object.__setattr__(self, "items", items)


def effective_plan(offer_plan: FeePlan, override: PlanOverride | None = None) -> FeePlan:
    """Return the plan a partner is paid by: the offer's plan with the partner's override laid over it."""
    if override is None:
        return offer_plan
    changes: dict[str, Any] = {}
    for spec in fields(override):
        value = getattr(override, spec.name)
        if isinstance(value, Mapping):
            if value:
                changes[spec.name] = {**getattr(offer_plan, spec.name), **value}
        elif value is not None:
            changes[spec.name] = value
    return replace(offer_plan, **changes)


def cpm_accrual(rate_minor_per_mille: int, views_before: int, views_now: int, mode: str = "half_even") -> int:
    """Return what the views from `views_before` to `views_now` earn at a rate per thousand views.

    Both ends are rounded on the cumulative count, so batches add up to exactly the amount of their total:
    no fraction of a minor unit is lost or invented however the views are split.
    """
    check_minor(rate_minor_per_mille, "rate_minor_per_mille")
    check_minor(views_before, "views_before", "invalid_event")
    check_minor(views_now, "views_now", "invalid_event")
    if views_now < views_before:
        raise FeeError("invalid_event", f"views went down from {views_before} to {views_now}")
    earned = round_minor(Fraction(views_now * rate_minor_per_mille, 1000), mode)
    return earned - round_minor(Fraction(views_before * rate_minor_per_mille, 1000), mode)


def commission(plan: FeePlan, event: FeeEvent) -> Commission:
    """Return the lines `event` earns under `plan`, each rounded once, lines of zero left out, with notes.

    At most one line per kind: the ledger keys a line by (source event, kind), so a second line of a kind
    would be taken for a replay of the first. A markup sale is one line, the sum over its items.
    """
    ccy = plan.currency
    lines: list[FeeLine] = []
    notes: list[str] = []
    if event.kind in ("view", "click") and event.bot:
        return Commission(())
    if event.kind == "view":
        if plan.cpv_minor is not None:
            lines.append(FeeLine("cpv", plan.cpv_minor, ccy, f"1 view at {_money(plan.cpv_minor, ccy)}"))
        if plan.cpm_minor is not None:
            amount = cpm_accrual(plan.cpm_minor, event.views_before, event.views_before + 1, plan.rounding)
            basis = f"view {event.views_before + 1} at {_money(plan.cpm_minor, ccy)} per 1000"
            lines.append(FeeLine("cpm", amount, ccy, basis))
    elif event.kind == "click":
        if event.unique and plan.cpc_minor is not None:
            lines.append(FeeLine("cpc", plan.cpc_minor, ccy, f"unique click at {_money(plan.cpc_minor, ccy)}"))
    else:
        action = event.action or event.kind
        if action in plan.cpa_minor:
            amount = plan.cpa_minor[action]
            lines.append(FeeLine("cpa", amount, ccy, f"action {action!r} at {_money(amount, ccy)}"))
        if event.kind == "purchase":
            sale_ccy = event.currency or plan.currency  # never empty: FeeEvent refuses a purchase without one
            lines.extend(_cps_lines(plan, event, sale_ccy, plan.rounding))
            markup, notes = _markup(plan, event, sale_ccy)
            lines.extend(markup)
    kept = tuple(line for line in lines if line.amount_minor)
    assert len({line.kind for line in kept}) == len(kept), "one line per kind"
    return Commission(kept, tuple(notes))


def estimate(plan: FeePlan, event: FeeEvent) -> int:
    """What a conversion will earn by the rules of `commission`, rounded down, for the tracker's payout caps.

    cpa by action name (an action without a name earns none) and cps by percent (the tier reached with no
    sales before); markup is left out, as its prices live in PostgreSQL.
    """
    total = 0
    if event.kind == "purchase" or event.action:
        total += plan.cpa_minor.get(event.action or event.kind, 0)
    if event.kind == "purchase":
        total += sum(line.amount_minor for line in _cps_lines(plan, event, event.currency or plan.currency, "down"))
    return total


def commission_lines(plan: FeePlan, event: FeeEvent) -> list[FeeLine]:
    """Return the commission lines `event` earns under `plan` (see `commission`)."""
    return list(commission(plan, event).lines)


def reversal_lines(
    original_lines: Sequence[FeeLine],
    refunded_minor: int,
    sale_minor: int,
    *,
    refunded_before_minor: int = 0,
    mode: str = "half_even",
    currency: str | None = None,
) -> list[FeeLine]:
    """Return the negative lines that take back the refunded share of a sale's commission lines.

    `refunded_minor`, `sale_minor` and `refunded_before_minor` (the part of the sale earlier refunds already
    refunded) are in the sale's minor units. Each line's reversal is rounded once, on the cumulative refunded
    share, so a full refund negates the lines exactly and successive partial refunds never take back more
    than was paid: refunds past the sale amount are capped at it.
    `currency` (the sale's) only makes the basis text readable.
    """
    check_minor(refunded_before_minor, "refunded_before_minor", "invalid_event")
    for name, value in (("refunded_minor", refunded_minor), ("sale_minor", sale_minor)):
        if check_minor(value, name, "invalid_event") == 0:
            raise FeeError("invalid_event", f"{name} must be positive")
    before = min(refunded_before_minor, sale_minor)
    after = min(refunded_before_minor + refunded_minor, sale_minor)
    share = f"{_money(after - before, currency)} of {_money(sale_minor, currency)}"
    if currency is None:
        share += " minor units"
    reversals: list[FeeLine] = []
    for line in original_lines:
        check_minor(line.amount_minor, "amount_minor of a line to reverse", "invalid_event")
        taken = _share(line.amount_minor, after, sale_minor, mode) - _share(line.amount_minor, before, sale_minor, mode)
        if taken:
            reversals.append(FeeLine(line.kind, -taken, line.currency, f"refund of {share}: {line.basis}"))
    return reversals


def _cps_lines(plan: FeePlan, event: FeeEvent, sale_ccy: str, mode: str) -> list[FeeLine]:
    tier = tier_for(plan.cps_tiers, event.sales_before, event.amount_before_minor)
    percent = tier.percent if tier is not None else plan.cps_percent
    if percent is None:
        return []
    amount = round_minor(Fraction(event.amount_minor) * Fraction(percent) / 100, mode)
    basis = f"{percent.normalize():f}% of {_money(event.amount_minor, sale_ccy)}"
    if tier is not None:
        reached = [f"{tier.min_sales} sales"] if tier.min_sales is not None else []
        if tier.min_amount_minor is not None:
            reached.append(_money(tier.min_amount_minor, plan.currency))
        basis += f", tier from {' or '.join(reached)}" if reached else ""
    return [FeeLine("cps", amount, sale_ccy, basis)]


def _markup(plan: FeePlan, event: FeeEvent, sale_ccy: str) -> tuple[list[FeeLine], list[str]]:
    """One line: each item's quantity x (retail - wholesale) at the versions in force at the sale, summed."""
    if not plan.wholesale:
        return [], []
    ccy = plan.currency
    if sale_ccy != ccy:
        raise FeeError("currency_mismatch", f"markup prices are in {ccy}, the sale is in {sale_ccy}")
    if event.occurred_at is None:
        raise FeeError("invalid_event", "a markup sale needs its time")
    if not event.items:
        return [], ["markup: the sale lists no items"]
    parts: list[str] = []
    notes: list[str] = []
    total = 0
    for sku, qty, _reported in event.items:  # the unit price the sale reported plays no part
        wholesale = _in_force(plan.wholesale, sku, event.occurred_at)
        retail = _in_force(plan.retail, sku, event.occurred_at)
        if wholesale is None:
            reason = "no wholesale price" + (" in force" if sku in plan.wholesale else "")
        elif retail is None:
            reason = "no retail price for this partner" + (" in force" if sku in plan.retail else "")
        elif retail < wholesale:
            reason = f"retail {format_amount(retail, ccy)} below wholesale {format_amount(wholesale, ccy)}"
        else:
            total += qty * (retail - wholesale)
            parts.append(f"{qty} x {sku} ({format_amount(retail, ccy)} - {format_amount(wholesale, ccy)})")
            continue
        notes.append(f"sku {sku}: {reason}, earns nothing")
    if not parts:
        return [], notes
    return [FeeLine("markup", total, ccy, " + ".join(parts) + f" {ccy}")], notes


def _in_force(prices: Mapping[str, tuple[PriceVersion, ...]], sku: str, at: datetime) -> int | None:
    if sku not in prices:
        return None
    try:
        return price_at(prices[sku], at).amount_minor
    except FeeError as exc:
        if exc.code != "no_price_in_force":
            raise
        return None


def _share(amount: int, part: int, whole: int, mode: str) -> int:
    return round_minor(Fraction(amount * part, whole), mode)


def _money(minor: int, currency: str | None) -> str:
    return f"{format_amount(minor, currency)} {currency}" if currency else str(minor)


def _freeze(mapping: Mapping[str, Any], check: Callable[[str, Any], Any]) -> Mapping[str, Any]:
    frozen = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not key:
            raise FeeError("invalid_plan", f"keys must be non-empty strings, got {key!r}")
        frozen[key] = check(key, value)
    return MappingProxyType(frozen)


def _check_versions(sku: str, versions: Sequence[PriceVersion]) -> tuple[PriceVersion, ...]:
    checked = tuple(versions)
    if not checked or not all(isinstance(version, PriceVersion) for version in checked):
        raise FeeError("invalid_plan", f"sku {sku!r} needs one or more PriceVersion")
    checked = tuple(sorted(checked, key=lambda version: version.valid_from))
    if len({version.valid_from for version in checked}) != len(checked):
        raise FeeError("ambiguous_price", f"two prices of sku {sku!r} start at the same instant")
    return checked
