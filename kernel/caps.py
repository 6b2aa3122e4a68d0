"""Caps as configured: daily and lifetime limits per offer and per partner on clicks, conversions and payout.

An offer's `caps` configuration looks like
    {"clicks": {"daily": 1000, "lifetime": 50000}, "conversions": {"daily": 20}, "payout": {"daily": 50000},
     "per_partner": {"clicks": {"daily": 100}, "conversions": {"lifetime": 5}}}
(payout in minor units of the offer's currency). Pure: the tracker checks and counts them in Redis
(tracker/caps.py), the portal validates them and shows their use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kernel import keys

METRICS = ("clicks", "conversions", "payout")
PERIODS = ("daily", "lifetime")


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
    partner = partner_id if limit.per_partner else None
    return keys.cap_key(prefix, offer_id, partner, limit.metric, day if limit.period == "daily" else None)
