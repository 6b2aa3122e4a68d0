"""What the fraud rules judge (billing/fraud.py), found for one batch of conversions in a few queries.

Ingest calls `gather` inside the batch's transaction, after the conversions inherited their clicks' facts; the
click's time, network and referrer come from the stored click event. The ASN database (CLICKMINT_ASN_DB, a
MaxMind-format file such as GeoLite2-ASN) is looked up with the click's stored /24 (or /48) network address:
the full address is never stored.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from typing import Any

import asyncpg
import maxminddb

from kernel.fraud import Facts, Rules

log = logging.getLogger("clickmint.billing.fraud")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class AsnLookup:
    """The autonomous system number of an address, from a MaxMind-format ASN database; None without one."""

    def __init__(self, path: str | None) -> None:
        self._reader: Any = None
        if path:
            self._reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)

    def asn(self, address: str) -> int | None:
        if self._reader is None or not address:
            return None
        try:
            found = self._reader.get(address)
        except ValueError:
            return None
        if not isinstance(found, dict):
            return None
        number = found.get("autonomous_system_number")
        return int(number) if isinstance(number, int) else None

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


async def gather(
    conn: asyncpg.Connection,
    events: list[dict[str, Any]],
    merchants: dict[int, int],
    rules: dict[int, Rules],
    clicks: dict[str, asyncpg.Record],
    asn: AsnLookup,
) -> dict[str, Facts]:
    """event id -> its facts, for the conversions of offers with rules (`merchants`: offer -> merchant)."""
    judged = [e for e in events if e.get("partner") and int(e.get("offer") or 0) in rules]
    if not judged:
        return {}
    # Only conversions naming their customer can be self-referrals: the partners' details are read for those alone.
    pairs = sorted(
        {(int(e["partner"]), merchants[int(e["offer"])]) for e in judged if e.get("customer") or e.get("email_sha256")}
    )
    who = (
        []
        if not pairs
        else await conn.fetch(
            """SELECT p.id AS partner_id, x.merchant_id, pp.customer_ref,
                      encode(sha256(convert_to(lower(p.email), 'UTF8')), 'hex') AS email
           FROM unnest($1::bigint[], $2::bigint[]) AS x(partner_id, merchant_id)
           JOIN partners p ON p.id = x.partner_id
           LEFT JOIN partner_programmes pp ON pp.partner_id = p.id AND pp.merchant_id = x.merchant_id""",
            [p for p, _ in pairs],
            [m for _, m in pairs],
        )
    )
    partners = {(r["partner_id"], r["merchant_id"]): (r["email"], r["customer_ref"]) for r in who}
    customers = sorted({(merchants[int(e["offer"])], str(e["customer"])[:255]) for e in judged if e.get("customer")})
    seen: dict[tuple[int, str], list[tuple[int, dt.datetime]]] = defaultdict(list)
    if customers:
        rows = await conn.fetch(
            """SELECT merchant_id, customer_ref, partner_id, first_seen_at FROM customers
               WHERE (merchant_id, customer_ref) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))""",
            [m for m, _ in customers],
            [c for _, c in customers],
        )
        for r in rows:
            seen[r["merchant_id"], r["customer_ref"]].append((r["partner_id"], r["first_seen_at"]))
    rates = await _rates(conn, judged, rules)
    facts: dict[str, Facts] = {}
    for event in judged:
        offer = int(event["offer"])
        partner = int(event["partner"])
        merchant = merchants[offer]
        offer_rules = rules[offer]
        at = _EPOCH + dt.timedelta(milliseconds=event["ts"])
        found = Facts()
        click = clicks.get(event.get("click_id") or "")
        if click is not None:
            found.seconds_since_click = (at - click["ts"]).total_seconds()
            found.referrer = click["referrer"] or ""
            found.asn = asn.asn(click["ip_prefix"]) if offer_rules.datacenter else None
        email, ref = partners.get((partner, merchant), (None, None))
        customer = str(event["customer"])[:255] if event.get("customer") else None
        found.customer_is_partner = bool(
            (customer and ref and customer == ref) or (email and event.get("email_sha256") == email)
        )
        if customer:
            since = at - dt.timedelta(days=offer_rules.multi_partner_days)
            earlier = seen[merchant, customer]
            found.other_partner = any(p != partner and first >= since for p, first in earlier)
            earlier.append((partner, at))  # a later conversion of this batch sees this one
        found.partner_rate, found.offer_rate = rates.get((offer, partner), ((0, 0), (0, 0)))
        facts[event["id"]] = found
    return facts


async def _rates(
    conn: asyncpg.Connection, events: list[dict[str, Any]], rules: dict[int, Rules]
) -> dict[tuple[int, int], tuple[tuple[int, int], tuple[int, int]]]:
    """(offer, partner) -> (the partner's conversions and unique clicks, the other partners' ones) over the
    offer's rate_days, for offers whose rate rule is on."""
    wanted = sorted({int(e["offer"]) for e in events if rules[int(e["offer"])].rate_factor})
    if not wanted:
        return {}
    days = {offer: rules[offer].rate_days for offer in wanted}
    rows = await conn.fetch(
        """SELECT x.offer_id, r.partner_id, sum(r.unique_clicks)::bigint AS clicks
           FROM unnest($1::bigint[], $2::int[]) AS x(offer_id, days)
           JOIN rollups r ON r.offer_id = x.offer_id AND r.day > (now() AT TIME ZONE 'UTC')::date - x.days
           WHERE r.offer_id = ANY($1::bigint[]) AND r.day > (now() AT TIME ZONE 'UTC')::date - $3::int
           GROUP BY 1, 2""",  # the WHERE, on the view's keys, reaches its tables (a join's ON would not)
        wanted,
        [days[o] for o in wanted],
        max(days.values()),
    )
    conv = await conn.fetch(
        """SELECT x.offer_id, c.partner_id, count(*) AS n
           FROM unnest($1::bigint[], $2::int[]) AS x(offer_id, days)
           JOIN conversions c ON c.offer_id = x.offer_id AND c.status <> 'rejected'
                AND c.ts > now() - make_interval(days => x.days)
           GROUP BY 1, 2""",
        wanted,
        [days[o] for o in wanted],
    )
    clicks: dict[int, dict[int, int]] = defaultdict(dict)
    converted: dict[int, dict[int, int]] = defaultdict(dict)
    for r in rows:
        clicks[r["offer_id"]][r["partner_id"]] = int(r["clicks"])
    for r in conv:
        converted[r["offer_id"]][r["partner_id"]] = int(r["n"])
    out: dict[tuple[int, int], tuple[tuple[int, int], tuple[int, int]]] = {}
    for offer in wanted:
        total_clicks, total_conv = sum(clicks[offer].values()), sum(converted[offer].values())
        for partner in set(clicks[offer]) | set(converted[offer]):
            mine = (converted[offer].get(partner, 0), clicks[offer].get(partner, 0))
            out[offer, partner] = (mine, (total_conv - mine[0], total_clicks - mine[1]))
    return out
