"""What an operator sees of an offer's caps: each cap with what the trackers counted against it, per offer and
for the offers page (read by portal/cap_usage.py from Redis; a 503 or nothing when Redis cannot say)."""

from __future__ import annotations

from typing import Any

import asyncpg
import redis.exceptions

from kernel import caps as tracker_caps
from kernel.redis.pyclient import Lazy
from portal import cap_usage
from portal.auth import Principal
from portal.errors import ApiError, not_found
from portal.operator_data import in_scope


async def offer_caps(
    conn: asyncpg.Connection, client: Lazy, prefix: str, who: Principal, offer_id: int
) -> dict[str, Any]:
    """Each cap of an offer with what the tracker has counted against it: today's (UTC) for daily caps;
    per partner, one row for each partner with a link to the offer."""
    where, args = in_scope(who, "o.merchant_id")
    row = await conn.fetchrow(f"SELECT o.caps, o.currency FROM offers o WHERE {where} AND o.id = $2", *args, offer_id)
    if row is None:
        raise not_found("offer")
    limits = cap_usage.limits_of(row["caps"])
    partners = await _linked_partners(conn, {offer_id: limits})
    try:
        day, found = await cap_usage.usage(client, prefix, [(offer_id, limits, partners.get(offer_id, []))])
    except (redis.exceptions.RedisError, OSError) as exc:
        raise ApiError(503, "redis_unavailable", "the cap counters cannot be read right now; retry later") from exc
    return {"offer_id": offer_id, "currency": row["currency"], "day": day, "caps": found[offer_id]}


async def _linked_partners(
    conn: asyncpg.Connection, limits: dict[int, tuple[tracker_caps.Limit, ...]]
) -> dict[int, list[int]]:
    """Per offer with a per-partner cap: the partners with a link to it, whose counters there are to read."""
    offer_ids = [offer_id for offer_id, found in limits.items() if any(limit.per_partner for limit in found)]
    if not offer_ids:
        return {}
    rows = await conn.fetch(
        """SELECT offer_id, array_agg(DISTINCT partner_id ORDER BY partner_id) AS partners FROM links
           WHERE offer_id = ANY($1::bigint[]) GROUP BY offer_id""",
        offer_ids,
    )
    return {r["offer_id"]: list(r["partners"]) for r in rows}


async def caps_used_today(
    conn: asyncpg.Connection, client: Lazy, prefix: str, offers: list[dict[str, Any]]
) -> dict[int, list[dict[str, Any]]] | None:
    """For the offers page, per offer: each offer-wide cap with what is used, each per-partner cap with how
    many of the offer's partners have reached it and the most any of them used. None: Redis cannot say."""
    limits = {o["id"]: cap_usage.limits_of(o["caps"]) for o in offers}
    limits = {offer_id: found for offer_id, found in limits.items() if found}
    partners = await _linked_partners(conn, limits)
    try:
        _, found_rows = await cap_usage.usage(
            client, prefix, [(offer_id, found, partners.get(offer_id, [])) for offer_id, found in limits.items()]
        )
    except (redis.exceptions.RedisError, OSError):
        return None
    summary: dict[int, list[dict[str, Any]]] = {}
    for offer_id, rows in found_rows.items():
        lines: dict[tuple[str, str, str], dict[str, Any]] = {}
        for row in rows:
            line = lines.setdefault(
                (row["scope"], row["metric"], row["period"]),
                {k: row[k] for k in ("scope", "metric", "period", "limit")} | {"used": 0, "partners": 0, "at_cap": 0},
            )
            line["used"] = max(line["used"], row["used"])  # per partner: the most any partner used
            line["partners"] += 1
            line["at_cap"] += row["remaining"] == 0
        summary[offer_id] = list(lines.values())
    return summary
