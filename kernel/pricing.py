"""Fee plan building blocks: configuration errors, versioned prices and volume tiers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise

__all__ = ["FeeError", "PriceVersion", "Tier", "check_percent", "check_tiers", "price_at", "tier_for"]

_HUNDRED = Decimal(100)


class FeeError(ValueError):
    """A plan or event that fees cannot be computed from; never papered over with a zero or negative fee.

    `code` is machine-readable: invalid_plan, invalid_event, no_price_in_force, ambiguous_price,
    no_wholesale_price, retail_below_wholesale, currency_mismatch.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PriceVersion:
    """A unit price in minor units of the plan's currency, in force from `valid_from` until the next version."""

    valid_from: datetime
    amount_minor: int

    def __post_init__(self) -> None:
        _check_aware(self.valid_from, "valid_from")
        check_minor(self.amount_minor, "amount_minor")


@dataclass(frozen=True, slots=True)
class Tier:
    """A cps rate that applies once `min_sales` sales or `min_amount_minor` of sales were made in the period.

    A threshold left as None is not used; a tier with no threshold is the base rate. Sales and amounts
    count what came before the sale being priced, so the sale that is the 100th (99 before it) still gets
    the rate of the tier below `min_sales=100`.
    """

    percent: Decimal
    min_sales: int | None = None
    min_amount_minor: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "percent", check_percent(self.percent))
        for name in ("min_sales", "min_amount_minor"):
            if getattr(self, name) is not None:
                check_minor(getattr(self, name), name)

    def reached(self, sales_before: int, amount_before_minor: int) -> bool:
        """Tell whether this tier applies after `sales_before` sales worth `amount_before_minor` in the period."""
        if self.min_sales is None and self.min_amount_minor is None:
            return True
        by_sales = self.min_sales is not None and sales_before >= self.min_sales
        by_amount = self.min_amount_minor is not None and amount_before_minor >= self.min_amount_minor
        return by_sales or by_amount


def price_at(versions: Sequence[PriceVersion], at: datetime) -> PriceVersion:
    """Return the price version in force at `at`: the latest one whose `valid_from` is not after it."""
    _check_aware(at, "at", "invalid_event")
    starts = [version.valid_from for version in versions]
    if len(set(starts)) != len(starts):
        raise FeeError("ambiguous_price", "two price versions start at the same instant")
    in_force = [version for version in versions if version.valid_from <= at]
    if not in_force:
        raise FeeError("no_price_in_force", f"no price version in force at {at.isoformat()}")
    return max(in_force, key=lambda version: version.valid_from)


def tier_for(tiers: Sequence[Tier], sales_before: int, amount_before: int) -> Tier | None:
    """Return the last tier in `tiers` (listed from lowest to highest) that the period's counters have reached.

    `sales_before` is the 0-based count of approved sales in the period before this one, `amount_before`
    their total in minor units. None when no tier is reached: the plan's plain rate applies.
    """
    check_minor(sales_before, "sales_before", "invalid_event")
    check_minor(amount_before, "amount_before", "invalid_event")
    chosen = None
    for tier in tiers:
        if tier.reached(sales_before, amount_before):
            chosen = tier
    return chosen


def check_tiers(tiers: Sequence[Tier]) -> tuple[Tier, ...]:
    """Return `tiers` as a tuple after checking that each threshold rises strictly from tier to tier."""
    ladder = tuple(tiers)
    for name in ("min_sales", "min_amount_minor"):
        used = [getattr(tier, name) for tier in ladder if getattr(tier, name) is not None]
        if any(low >= high for low, high in pairwise(used)):
            raise FeeError("invalid_plan", f"tier {name} thresholds must rise strictly from tier to tier")
    return ladder


def check_percent(value: Decimal | int) -> Decimal:
    """Return `value` as a Decimal percentage between 0 and 100; floats and non-finite values are refused."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise FeeError("invalid_plan", f"a percentage is a Decimal, never {type(value).__name__}")
    percent = Decimal(value)
    if not percent.is_finite() or not 0 <= percent <= _HUNDRED:
        raise FeeError("invalid_plan", f"a percentage must be between 0 and 100: {value}")
    return percent


def check_minor(value: object, name: str, code: str = "invalid_plan") -> int:
    """Return `value` if it is a non-negative int (of minor units or a count), else raise FeeError(code)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FeeError(code, f"{name} must be a non-negative int, got {value!r}")
    return value


def _check_aware(moment: object, name: str, code: str = "invalid_plan") -> None:
    # A naive datetime compared with an aware one raises late, deep in settlement; refuse it at once.
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise FeeError(code, f"{name} must be a timezone-aware datetime, got {moment!r}")
