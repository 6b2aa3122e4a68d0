"""Caps: daily and lifetime limits per offer and per partner on clicks, conversions and payout.

An offer's `caps` configuration looks like
    {"clicks": {"daily": 1000, "lifetime": 50000}, "conversions": {"daily": 20}, "payout": {"daily": 50000},
     "per_partner": {"clicks": {"daily": 100}, "conversions": {"lifetime": 5}}}
(payout in minor units of the offer's currency). The counters live in Redis under the offer's hash
tag and one script checks and increments all of an event's counters atomically: either every
counter has room and all are incremented, or none is and the event is over cap. Enforced the
moment a cap is hit, across any number of tracker processes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from kernel.redis.scripts import CHECK_FUNCTION

METRICS = ("clicks", "conversions", "payout")
PERIODS = ("daily", "lifetime")
DAY_TTL_S = 2 * 86400  # a daily counter outlives its day, then goes away by itself

# KEYS: the counters; ARGV: per key its limit, its TTL and its increment.
# Returns 1 when all counters had room (and were incremented), 0 when any would exceed its limit.
SCRIPT = CHECK_FUNCTION + b"return capped(1, 1) and 1 or 0\n"
SCRIPT_SHA = hashlib.sha1(SCRIPT).hexdigest().encode()  # Redis names scripts by SHA-1


class CapConfigError(ValueError):
    """An offer's caps configuration is malformed."""


@dataclass(frozen=True, slots=True)
class Limit:
    metric: str
    period: str
    per_partner: bool
    value: int


def parse(config: dict[str, Any]) -> tuple[Limit, ...]:
    """The limits a caps configuration sets; refuses unknown metrics, periods and non-positive values."""
    limits: list[Limit] = []

    def _scope(section: dict[str, Any], per_partner: bool) -> None:
        for metric, periods in section.items():
            if metric == "per_partner" and not per_partner:
                continue
            if metric not in METRICS or not isinstance(periods, dict):
                raise CapConfigError(f"unknown cap metric {metric!r}; use {', '.join(METRICS)}")
            for period, value in periods.items():
                if period not in PERIODS:
                    raise CapConfigError(f"unknown cap period {period!r}; use daily or lifetime")
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise CapConfigError(f"cap {metric}.{period} must be a whole number >= 0")
                limits.append(Limit(metric, period, per_partner, value))

    _scope(config, False)
    partner = config.get("per_partner") or {}
    if not isinstance(partner, dict):
        raise CapConfigError("per_partner must be an object")
    _scope(partner, True)
    return tuple(limits)


def counter_key(prefix: str, offer_id: int, limit: Limit, partner_id: int, day: str) -> str:
    """The Redis key of one limit's counter; `day` (YYYYMMDD, UTC) names a daily counter's day."""
    who = f"p{partner_id}:" if limit.per_partner else ""
    when = f"d{day}" if limit.period == "daily" else "life"
    return f"{prefix}:cap:{{o{offer_id}}}:{who}{limit.metric}:{when}"


def counters(
    prefix: str, offer_id: int, partner_id: int, limits: tuple[Limit, ...], increments: dict[str, int], now: float
) -> tuple[list[str], list[int]]:
    """The counter keys one event (e.g. {"conversions": 1, "payout": 250}) touches, and per key its
    limit, TTL and increment: the KEYS and ARGV of CHECK_FUNCTION. Empty when no cap applies."""
    day = time.strftime("%Y%m%d", time.gmtime(now))
    keys: list[str] = []
    args: list[int] = []
    for limit in limits:
        increment = increments.get(limit.metric)
        if increment is None:
            continue
        keys.append(counter_key(prefix, offer_id, limit, partner_id, day))
        args += [limit.value, DAY_TTL_S if limit.period == "daily" else 0, increment]
    return keys, args


def check_command(
    prefix: str, offer_id: int, partner_id: int, limits: tuple[Limit, ...], increments: dict[str, int], now: float
) -> tuple[Any, ...] | None:
    """The EVALSHA that checks and counts one event (e.g. {"conversions": 1, "payout": 250}); None: no cap applies."""
    keys, args = counters(prefix, offer_id, partner_id, limits, increments, now)
    if not keys:
        return None
    return (b"EVALSHA", SCRIPT_SHA, len(keys), *keys, *args)


def payout_estimate(fee_plan: dict[str, Any], event: dict[str, Any]) -> int:
    """The commission a conversion will earn, in minor units, for payout caps (cpa by action, cps percent).

    Rounded down: a cap is never tripped by a fraction of a minor unit.
    """
    total = 0
    cpa = fee_plan.get("cpa")
    if isinstance(cpa, dict):
        name = event.get("action") or ("purchase" if event.get("type") == "purchase" else "")
        value = cpa.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            total += value
    percent = fee_plan.get("cps_percent")
    amount = event.get("amount")
    if percent is not None and isinstance(amount, int) and event.get("type") == "purchase":
        try:
            total += int(Decimal(str(percent)) * amount / 100)
        except InvalidOperation:
            pass
    return max(total, 0)
