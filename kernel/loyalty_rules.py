"""Loyalty, the pure core: a programme's rules, what an event earns, tiers, proportional reversal, FIFO, value.

Plain data in, plain data out (no database, no HTTP). Points are integers; a multiplier is a Decimal; an
earning is rounded down once, after every multiplier; a discount is rounded down once (the merchant never
gives more than the points are worth).

Earning rules (`rules`, JSON):
    {"unit_minor": 100, "points_per_unit": 1,               # base: 1 point per 1.00 of the currency
     "offers": {"12": {"unit_minor": 100, "points_per_unit": 2}},   # replaces the base on offer 12's sales
     "skus": {"TEA-1": {"unit_minor": 100, "points_per_unit": 5}},  # these items' amount earns by this rule
     "categories": {"tea": {...}},                          # items sent with "category" earn by this rule
     "actions": {"signup": 50, "review": 20},               # fixed points per action name
     "campaigns": [{"name": "Black Friday", "multiplier": "2", "starts_at": "...", "ends_at": "..."}]}
Tiers (`tiers`, JSON):
    {"basis": "points" | "spend", "window_days": 365, "grace_days": 30,
     "levels": [{"name": "Silver", "min": 1000, "multiplier": "1.25"}, {"name": "Gold", "min": 5000, ...}]}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

REFUND_POLICIES = ("negative", "clamp")
_MAX_POINTS = 10**12


class LoyaltyError(ValueError):
    """A refused programme or request: `code` is machine-readable, the message says why."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


@dataclass(frozen=True)
class Rate:
    points_per_unit: int
    unit_minor: int

    def points(self, amount_minor: int, multiplier: Decimal) -> int:
        if amount_minor <= 0 or self.points_per_unit <= 0:
            return 0
        raw = Decimal(amount_minor * self.points_per_unit) * multiplier / self.unit_minor
        return int(raw.to_integral_value(rounding=ROUND_FLOOR))


@dataclass(frozen=True)
class Campaign:
    name: str
    multiplier: Decimal
    starts_at: dt.datetime
    ends_at: dt.datetime

    def active(self, at: dt.datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class Tier:
    name: str
    min: int
    multiplier: Decimal


@dataclass(frozen=True)
class Tiers:
    basis: str = "points"  # points earned, or spend (minor units of purchases), over the window
    window_days: int = 365
    grace_days: int = 0  # a member keeps a higher tier this long after falling below it
    levels: tuple[Tier, ...] = ()

    def multiplier(self, name: str | None) -> Decimal:
        for tier in self.levels:
            if tier.name == name:
                return tier.multiplier
        return Decimal(1)


@dataclass(frozen=True)
class Programme:
    merchant_id: int
    currency: str
    enabled: bool = False
    value_points: int = 100
    value_minor: int = 1
    expiry_days: int | None = None
    refund_policy: str = "clamp"
    base: Rate | None = None
    offers: Mapping[int, Rate] = field(default_factory=dict)
    skus: Mapping[str, Rate] = field(default_factory=dict)
    categories: Mapping[str, Rate] = field(default_factory=dict)
    actions: Mapping[str, int] = field(default_factory=dict)
    campaigns: tuple[Campaign, ...] = ()
    tiers: Tiers = field(default_factory=Tiers)
    redeem_min_points: int = 0
    redeem_max_percent: int = 100

    def multiplier(self, at: dt.datetime, tier: str | None) -> Decimal:
        """Every campaign running at `at`, times the member's tier multiplier."""
        result = self.tiers.multiplier(tier)
        for campaign in self.campaigns:
            if campaign.active(at):
                result *= campaign.multiplier
        return result

    def discount_minor(self, points: int) -> int:
        """What `points` take off an order, in minor units of the programme's currency (rounded down)."""
        return points * self.value_minor // self.value_points

    def points_for_discount(self, discount_minor: int) -> int:
        """The fewest points worth at least `discount_minor` (rounded up)."""
        if self.value_minor == 0:
            raise LoyaltyError("no_point_value", "this programme's points have no value")
        return -(-discount_minor * self.value_points // self.value_minor)


@dataclass(frozen=True)
class Earning:
    rule: str
    points: int
    amount_minor: int | None  # what a purchase's rule counted (None for an action)


def _int(name: str, raw: Any, low: int, high: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not low <= raw <= high:
        raise LoyaltyError("invalid_field", f"{name} must be a whole number from {low} to {high}")
    return raw


def _decimal(name: str, raw: Any) -> Decimal:
    try:
        value = Decimal(str(raw).strip().removesuffix("x"))
    except (InvalidOperation, ValueError) as exc:
        raise LoyaltyError("invalid_field", f"{name} must be a number such as 1.5") from exc
    if not value.is_finite() or not Decimal("0") <= value <= Decimal(100):
        raise LoyaltyError("invalid_field", f"{name} must be between 0 and 100")
    return value


def _time(name: str, raw: Any) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError as exc:
        raise LoyaltyError("invalid_field", f"{name} must be a date and time, e.g. 2026-11-27T00:00:00Z") from exc
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _rate(name: str, raw: Any) -> Rate:
    if not isinstance(raw, Mapping):
        raise LoyaltyError("invalid_field", f"{name} must be an object with points_per_unit and unit_minor")
    return Rate(
        _int(f"{name}.points_per_unit", raw.get("points_per_unit", 1), 0, 1_000_000),
        _int(f"{name}.unit_minor", raw.get("unit_minor", 100), 1, 10**9),
    )


def _table(name: str, raw: Any) -> Mapping[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or len(raw) > 10_000:
        raise LoyaltyError("invalid_field", f"{name} must be an object")
    return raw


def parse_rules(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The earning rules of a programme, checked; raises LoyaltyError naming the field."""
    raw = _table("rules", raw)
    known = {"unit_minor", "points_per_unit", "offers", "skus", "categories", "actions", "campaigns"}
    if unknown := sorted(set(raw) - known):
        raise LoyaltyError("invalid_field", f"unknown rule field(s): {', '.join(unknown)}")
    base = _rate("rules", raw) if "points_per_unit" in raw or "unit_minor" in raw else None
    offers = {}
    for key, value in _table("offers", raw.get("offers")).items():
        if not str(key).isdigit():
            raise LoyaltyError("invalid_field", f"offers: {key!r} is not an offer id")
        offers[int(key)] = _rate(f"offers.{key}", value)
    skus = {str(k): _rate(f"skus.{k}", v) for k, v in _table("skus", raw.get("skus")).items()}
    categories = {str(k): _rate(f"categories.{k}", v) for k, v in _table("categories", raw.get("categories")).items()}
    actions = {str(k): _int(f"actions.{k}", v, 0, 1_000_000) for k, v in _table("actions", raw.get("actions")).items()}
    campaigns = []
    for i, item in enumerate(raw.get("campaigns") or ()):
        if not isinstance(item, Mapping):
            raise LoyaltyError("invalid_field", f"campaigns[{i}] must be an object")
        start, end = (
            _time(f"campaigns[{i}].starts_at", item.get("starts_at")),
            _time(f"campaigns[{i}].ends_at", item.get("ends_at")),
        )
        if end <= start:
            raise LoyaltyError("invalid_field", f"campaigns[{i}] ends before it starts")
        campaigns.append(
            Campaign(
                str(item.get("name") or f"campaign {i + 1}"), _decimal("multiplier", item.get("multiplier")), start, end
            )
        )
    return {
        "base": base,
        "offers": offers,
        "skus": skus,
        "categories": categories,
        "actions": actions,
        "campaigns": tuple(campaigns),
    }


def parse_tiers(raw: Mapping[str, Any]) -> Tiers:
    raw = _table("tiers", raw)
    basis = raw.get("basis", "points")
    if basis not in ("points", "spend"):
        raise LoyaltyError("invalid_field", "tiers.basis must be points or spend")
    levels = []
    for i, item in enumerate(raw.get("levels") or ()):
        if not isinstance(item, Mapping) or not str(item.get("name") or "").strip():
            raise LoyaltyError("invalid_field", f"tiers.levels[{i}] needs a name")
        levels.append(
            Tier(
                str(item["name"]).strip()[:50],
                _int(f"tiers.levels[{i}].min", item.get("min"), 0, _MAX_POINTS),
                _decimal(f"tiers.levels[{i}].multiplier", item.get("multiplier", 1)),
            )
        )
    if len({t.name for t in levels}) != len(levels):
        raise LoyaltyError("invalid_field", "tier names must differ")
    return Tiers(
        basis,
        _int("tiers.window_days", raw.get("window_days", 365), 1, 3650),
        _int("tiers.grace_days", raw.get("grace_days", 0), 0, 3650),
        tuple(sorted(levels, key=lambda t: t.min)),
    )


def programme(row: Mapping[str, Any]) -> Programme:
    """A Programme from its loyalty_programmes row (rules and tiers as dicts or JSON text)."""
    import orjson

    rules_raw = row.get("rules") or {}
    tiers_raw = row.get("tiers") or {}
    rules = parse_rules(orjson.loads(rules_raw) if isinstance(rules_raw, str | bytes) else rules_raw)
    tiers = parse_tiers(orjson.loads(tiers_raw) if isinstance(tiers_raw, str | bytes) else tiers_raw)
    if row.get("refund_policy", "clamp") not in REFUND_POLICIES:
        raise LoyaltyError("invalid_field", "refund_policy must be negative or clamp")
    return Programme(
        merchant_id=int(row["merchant_id"]),
        currency=str(row["currency"]),
        enabled=bool(row.get("enabled", False)),
        value_points=int(row.get("value_points", 100)),
        value_minor=int(row.get("value_minor", 1)),
        expiry_days=row.get("expiry_days"),
        refund_policy=str(row.get("refund_policy", "clamp")),
        tiers=tiers,
        redeem_min_points=int(row.get("redeem_min_points", 0)),
        redeem_max_percent=int(row.get("redeem_max_percent", 100)),
        **rules,
    )


def earnings(prog: Programme, event: Mapping[str, Any], at: dt.datetime, tier: str | None) -> list[Earning]:
    """What one action or purchase earns, one Earning per rule (each becomes a lot). A purchase in another
    currency than the programme's earns nothing (points are never converted at a guessed rate)."""
    multiplier = prog.multiplier(at, tier)
    if event["type"] == "action":
        name = str(event.get("action") or "action")
        points = prog.actions.get(name)
        if not points:
            return []
        earned = int((Decimal(points) * multiplier).to_integral_value(rounding=ROUND_FLOOR))
        return [Earning(f"action:{name}", earned, None)] if earned > 0 else []
    if event["type"] != "purchase" or event.get("currency") != prog.currency:
        return []
    total = int(event.get("amount") or 0)
    by_rule: dict[str, tuple[Rate, int]] = {}
    rest = total
    for item in event.get("items") or ():
        sku, category = str(item.get("sku") or ""), str(item.get("category") or "")
        rate, rule = (prog.skus.get(sku), f"sku:{sku}") if sku in prog.skus else (None, "")
        if rate is None and category in prog.categories:
            rate, rule = prog.categories[category], f"category:{category}"
        if rate is None:
            continue
        amount = min(int(item.get("qty") or 0) * int(item.get("price") or 0), rest)
        if amount <= 0:
            continue
        rest -= amount
        had = by_rule.get(rule)
        by_rule[rule] = (rate, amount + (had[1] if had else 0))
    offer = int(event.get("offer") or 0)
    if offer in prog.offers:
        by_rule[f"offer:{offer}"] = (prog.offers[offer], rest)
    elif prog.base is not None:
        by_rule["base"] = (prog.base, rest)
    found = []
    for rule, (rate, amount) in by_rule.items():
        points = rate.points(amount, multiplier)
        if points > 0:
            found.append(Earning(rule, points, amount))
    return found


def cumulative_share(points: int, refunded_minor: int, amount_minor: int) -> int:
    """The points a lot loses once `refunded_minor` of its `amount_minor` is refunded (rounded down on the
    cumulative share, so partial refunds add up to exactly the lot when the whole amount is refunded)."""
    if amount_minor <= 0:
        return points if refunded_minor > 0 else 0
    refunded = min(max(refunded_minor, 0), amount_minor)
    return points * refunded // amount_minor


@dataclass(frozen=True)
class Reversal:
    from_remaining: int  # points taken from the lot's unspent remainder
    debt: int  # points already spent, charged to the member (policy negative)

    @property
    def points(self) -> int:
        return self.from_remaining + self.debt


def reverse(points: int, remaining: int, spent: int, policy: str) -> Reversal:
    """Take `points` back from an active lot with `remaining` unspent and `spent` spent (not yet reversed):
    the unspent part first; what was spent becomes debt under policy negative, and is let go under clamp."""
    from_remaining = min(points, remaining)
    rest = points - from_remaining
    debt = min(rest, spent) if policy == "negative" else 0
    return Reversal(from_remaining, debt)


def fifo(lots: Iterable[tuple[int, int]], points: int) -> list[tuple[int, int]]:
    """Which lots (id, remaining), already in spending order, give `points`: [(lot id, taken)]."""
    taken = []
    for lot_id, remaining in lots:
        if points <= 0:
            break
        take = min(remaining, points)
        if take > 0:
            taken.append((lot_id, take))
            points -= take
    if points > 0:
        raise LoyaltyError("insufficient_points", "not enough points", 409)
    return taken


def tier_for(tiers: Tiers, total: int, current: str | None, since: dt.datetime | None, now: dt.datetime) -> str | None:
    """The tier a member's window total reaches; a member above it keeps the current tier during the grace."""
    reached = None
    for tier in tiers.levels:
        if total >= tier.min:
            reached = tier.name
    rank = {t.name: i for i, t in enumerate(tiers.levels)}
    if (
        current in rank
        and rank[current] > rank.get(reached, -1)  # type: ignore[arg-type]
        and since is not None
        and now < since + dt.timedelta(days=tiers.grace_days)
    ):
        return current
    return reached


def progress(tiers: Tiers, total: int) -> dict[str, Any] | None:
    """The next tier and what is missing to reach it, for the member's view (None at the top)."""
    for tier in tiers.levels:
        if total < tier.min:
            return {"next_tier": tier.name, "missing": tier.min - total, "basis": tiers.basis}
    return None


def summarise(entries: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Totals by kind of a member's entries [(kind, points)], and their balance."""
    totals = {"earned": 0, "spent": 0, "expired": 0, "reversed": 0, "adjusted": 0}
    names = {"earn": "earned", "spend": "spent", "expire": "expired", "reverse": "reversed", "adjust": "adjusted"}
    for kind, points in entries:
        totals[names[kind]] += points if kind in ("earn", "adjust") else -points
    totals["balance"] = totals["earned"] + totals["adjusted"] - totals["spent"] - totals["expired"] - totals["reversed"]
    return totals
