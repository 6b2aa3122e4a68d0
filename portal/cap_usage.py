"""How much of an offer's caps is used: read from the counters the tracker counts in Redis.

A click cap's counter holds the clicks the trackers *admitted* (reported with each batch, tracker/leases.py),
never the units they hold on lease and have not used; a conversion or payout cap's, what its script counted.
Daily caps are read for today (UTC), the day the tracker is counting; per-partner caps for the
partners asked about. Raises redis.exceptions.RedisError or OSError when the counters cannot be read.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import orjson

from kernel import caps as tracker_caps
from kernel.redis.pyclient import Lazy


def limits_of(config: Any) -> tuple[tracker_caps.Limit, ...]:
    """An offer's stored caps configuration as its limits (none when empty; it was checked when stored)."""
    value = orjson.loads(config) if isinstance(config, str | bytes) else config
    try:
        return tracker_caps.parse(value or {})
    except (tracker_caps.CapConfigError, AttributeError):
        return ()


async def usage(
    client: Lazy,
    prefix: str,
    offers: Iterable[tuple[int, tuple[tracker_caps.Limit, ...], list[int]]],
) -> tuple[str, dict[int, list[dict[str, Any]]]]:
    """Per offer (id, limits, the partners whose per-partner caps to read): a row per limit and partner with
    its limit, what is used and what remains; and the UTC day read. One MGET for all of them (on a cluster, one
    per node: an offer's counters share a slot, different offers' need not)."""
    today = dt.datetime.now(dt.UTC).date()
    day = today.strftime("%Y%m%d")
    found: dict[int, list[dict[str, Any]]] = {}
    keys: list[str] = []
    for offer_id, limits, partners in offers:
        rows = found.setdefault(offer_id, [])
        for limit in limits:
            for partner in partners if limit.per_partner else [None]:
                keys.append(tracker_caps.counter_key(prefix, offer_id, limit, partner or 0, day))
                rows.append(
                    {
                        "metric": limit.metric,
                        "period": limit.period,
                        "scope": "partner" if limit.per_partner else "offer",
                        "partner_id": partner,
                        "limit": limit.value,
                    }
                )
    values = await client.mget(keys) if keys else []
    flat = (row for rows in found.values() for row in rows)
    for row, value in zip(flat, values, strict=True):
        row["used"] = int(value or 0)
        row["remaining"] = max(row["limit"] - row["used"], 0)
    return today.isoformat(), found
