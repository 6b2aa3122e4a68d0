"""Caps in Redis: the scripts that check and count daily and lifetime limits (kernel/caps.py) atomically.

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
from typing import Any

from kernel.caps import Limit, counter_key
from kernel.redis.scripts import CHECK_FUNCTION

DAY_TTL_S = 2 * 86400  # a daily counter outlives its day, then goes away by itself

# KEYS: the counters; ARGV: per key its limit, its TTL and its increment.
# Returns 1 when all counters had room (and were incremented), 0 when any would exceed its limit.
SCRIPT = CHECK_FUNCTION + b"return capped(1, 1) and 1 or 0\n"
SCRIPT_SHA = hashlib.sha1(SCRIPT).hexdigest().encode()  # Redis names scripts by SHA-1


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
