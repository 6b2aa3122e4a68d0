"""What a partner may read and change. Every function takes the partner id from the credential
(`Principal.partner_id`), never from the request: another partner's object is simply not found."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import urlencode

import asyncpg
import redis.exceptions

from billing.public import figures as billing_figures
from kernel.macros import normalize_hosts, safe_deep_link
from kernel.money import format_amount
from kernel.redis.pyclient import Lazy
from portal import cap_usage
from portal.errors import invalid, not_found

RANGES = {"today": 1, "7d": 7, "30d": 30}
GROUPS = ("day", "offer", "sub1", "country", "period")
_COUNTS = ("views", "clicks", "unique_clicks", "bots", "actions")
_COUNT_KEYS = {
    "day": "r.day::text",
    "offer": "r.offer_id::text",
    "sub1": "r.sub1",
    "country": "r.country",
    "period": "to_char(r.day, 'YYYY-MM')",
    "partner": "r.partner_id::text",
    "partner_offer": "r.partner_id || ':' || r.offer_id",
}


def first_day(range_: str, today: dt.date | None = None) -> dt.date:
    today = today or dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=RANGES[range_] - 1)


def money_row(currency: str, figures: billing_figures.Figures) -> dict[str, Any]:
    """One currency's money, as minor units and as decimal text in that currency."""
    row: dict[str, Any] = {"currency": currency, "sales": figures.sales}
    for name, value in (
        ("sales_amount", figures.sales_minor),
        ("commission_pending", figures.pending),
        ("commission_approved", figures.approved),
        ("commission_reversed", figures.reversed),
        ("commission_paid", figures.paid),
        ("commission_rejected", figures.rejected),
    ):
        row[f"{name}_minor" if name != "sales_amount" else "sales_minor"] = value
        row[name] = format_amount(value, currency)
    return row


async def traffic_counts(conn: asyncpg.Connection, where: str, args: list[Any], group: str) -> dict[str, dict]:
    """Views, clicks, unique clicks, bots and actions from the rollups, per key of `group` (no money)."""
    sums = ", ".join(f"sum(r.{c})::bigint AS {c}" for c in _COUNTS)
    rows = await conn.fetch(
        f"SELECT {_COUNT_KEYS[group]} AS key, {sums} FROM rollups r JOIN offers o ON o.id = r.offer_id "
        f"WHERE {where} GROUP BY 1",
        *args,
    )
    return {row["key"]: {c: int(row[c]) for c in _COUNTS} for row in rows}


def assemble(
    counts: dict[str, dict[str, int]], money: billing_figures.Result, label: dict[str, str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, int], list[dict[str, Any]]]:
    """Rows per key (traffic counts, and money per currency), the counts' totals and the money's per currency."""
    by_key: dict[str, dict[str, billing_figures.Figures]] = {}
    for (key, currency), figures in money.items():
        by_key.setdefault(key, {})[currency] = figures
    rows = []
    for key in sorted(set(counts) | set(by_key)):
        row: dict[str, Any] = {"key": (label or {}).get(key, key), **counts.get(key, dict.fromkeys(_COUNTS, 0))}
        row["money"] = [money_row(c, f) for c, f in sorted(by_key.get(key, {}).items())]
        rows.append(row)
    totals = {c: sum(count[c] for count in counts.values()) for c in _COUNTS}
    per_currency: dict[str, billing_figures.Figures] = {}
    for (_, currency), figures in money.items():
        total = per_currency.setdefault(currency, billing_figures.Figures())
        for name in ("pending", "approved", "reversed", "paid", "rejected", "sales", "sales_minor"):
            setattr(total, name, getattr(total, name) + getattr(figures, name))
    return rows, totals, [money_row(c, f) for c, f in sorted(per_currency.items())]


async def offer_labels(conn: asyncpg.Connection, keys: Any) -> dict[str, str]:
    ids = [int(k) for k in keys if str(k).isdigit()]
    rows = await conn.fetch("SELECT id, name FROM offers WHERE id = ANY($1::bigint[])", ids)
    return {str(r["id"]): f"{r['name']} #{r['id']}" for r in rows}


async def stats(
    conn: asyncpg.Connection,
    partner_id: int,
    range_: str,
    group: str,
    since: dt.date | None = None,
    until: dt.date | None = None,
) -> dict[str, Any]:
    """Traffic from billing's rollups (never a raw scan); money from the ledger and commissions, the records
    statements are made of (billing/figures.py), per currency the statement carries."""
    until = until or dt.datetime.now(dt.UTC).date()
    since = since or first_day(range_, until)
    where = "r.partner_id = $1 AND r.day >= $2 AND r.day <= $3"
    counts = await traffic_counts(conn, where, [partner_id, since, until], group)
    money = await billing_figures.commission(conn, billing_figures.Scope(partner_id=partner_id), since, until, group)
    label = await offer_labels(conn, set(counts) | {k for k, _ in money}) if group == "offer" else None
    rows, totals, per_currency = assemble(counts, money, label)
    bots = await conn.fetch(
        """SELECT reason, sum(events)::bigint AS events FROM rollup_bots
           WHERE partner_id = $1 AND day >= $2 AND day <= $3 GROUP BY reason ORDER BY 2 DESC, 1""",
        partner_id,
        since,
        until,
    )
    actions = await conn.fetch(
        """SELECT action, sum(events)::bigint AS events FROM rollup_actions
           WHERE partner_id = $1 AND day >= $2 AND day <= $3 GROUP BY action ORDER BY 2 DESC, 1""",
        partner_id,
        since,
        until,
    )
    return {
        "range": range_,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "group": group,
        "totals": totals,
        "money": per_currency,
        "rows": rows,
        "bots_by_reason": [dict(r) for r in bots],
        "actions_by_name": [dict(r) for r in actions],
    }


async def orders(conn: asyncpg.Connection, partner_id: int, limit: int) -> list[dict[str, Any]]:
    """Recent conversions with what each earned and what refunds took back, from the same records as stats."""
    rows = await conn.fetch(
        """SELECT c.event_id::text AS id, c.ts, c.kind, c.action, c.order_id, c.amount_minor, c.currency,
                  c.status, c.reason, c.note, c.refunded_minor, c.hold_until, c.customer_ref, o.name AS offer,
                  o.id AS offer_id, o.currency AS offer_currency
           FROM conversions c JOIN offers o ON o.id = c.offer_id
           WHERE c.partner_id = $1 ORDER BY c.ts DESC LIMIT $2""",
        partner_id,
        limit,
    )
    money = await billing_figures.conversions(conn, [row["id"] for row in rows])
    out = []
    for row in rows:
        item = dict(row)
        currency = row["currency"] or row["offer_currency"]
        item["ts"] = row["ts"].isoformat()
        item["hold_until"] = row["hold_until"].isoformat()
        item["amount"] = format_amount(row["amount_minor"], currency) if row["amount_minor"] is not None else None
        item["currency"] = currency
        earned = sorted(money.get(row["id"], {}).items())
        item["commissions"] = [
            {
                "currency": ccy,
                "earned": format_amount(f.pending + f.approved + f.paid, ccy),
                "earned_minor": f.pending + f.approved + f.paid,
                "reversed": format_amount(f.reversed, ccy),
                "reversed_minor": f.reversed,
            }
            for ccy, f in earned
        ]
        item["commission"] = " + ".join(f"{c['earned']} {c['currency']}" for c in item["commissions"]) or "0"
        item["reversed"] = " + ".join(
            f"{c['reversed']} {c['currency']}" for c in item["commissions"] if c["reversed_minor"]
        )
        out.append(item)
    return out


async def customers(conn: asyncpg.Connection, partner_id: int, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT c.customer_ref, m.name AS merchant, c.first_seen_at, c.first_event_id::text AS first_order,
                  c.orders, c.total_minor, c.currency
           FROM customers c JOIN merchants m ON m.id = c.merchant_id
           WHERE c.partner_id = $1 ORDER BY c.first_seen_at DESC LIMIT $2""",
        partner_id,
        limit,
    )
    return [
        {
            **dict(r),
            "first_seen_at": r["first_seen_at"].isoformat(),
            "total": format_amount(r["total_minor"], r["currency"]) if r["currency"] else None,
        }
        for r in rows
    ]


OPEN_OFFERS = """
    SELECT o.id, o.name, o.status, o.visibility, o.destination_url, o.allowed_hosts, o.currency, o.hold_days,
           o.attribution_window_s, o.starts_at, o.ends_at, m.id AS merchant_id, m.name AS merchant,
           jsonb_strip_nulls(o.fee_plan || coalesce(pp_plan.fee_plan, '{}'::jsonb)) AS fee_plan, o.caps
    FROM offers o
    JOIN merchants m ON m.id = o.merchant_id
    JOIN partner_programmes pp ON pp.merchant_id = o.merchant_id AND pp.partner_id = $1 AND pp.status = 'approved'
    LEFT JOIN offer_partner_plans pp_plan ON pp_plan.offer_id = o.id AND pp_plan.partner_id = $1
    WHERE o.status = 'active' AND (o.ends_at IS NULL OR o.ends_at > now())
      AND (o.visibility IN ('public', 'partners')
           OR EXISTS (SELECT 1 FROM links l WHERE l.offer_id = o.id AND l.partner_id = $1))
"""


def _offer(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    now = dt.datetime.now(dt.UTC)
    item["upcoming"] = row["starts_at"] is not None and row["starts_at"] > now
    for name in ("starts_at", "ends_at"):
        item[name] = row[name].isoformat() if row[name] else None
    item["fee_plan"] = _json(row["fee_plan"])
    item["allowed_hosts"] = list(row["allowed_hosts"])
    return item


def _json(value: Any) -> Any:
    import orjson

    return orjson.loads(value) if isinstance(value, str | bytes) else value


Counters = tuple[Lazy, str]  # the Redis the tracker counts caps in, and its key prefix


async def offers(conn: asyncpg.Connection, partner_id: int, counters: Counters) -> list[dict[str, Any]]:
    """Offers open to the partner, partner-only upcoming sales included (flagged `upcoming`), with their caps."""
    rows = await conn.fetch(OPEN_OFFERS + " ORDER BY o.starts_at NULLS FIRST, o.id", partner_id)
    return await _with_caps([_offer(r) for r in rows], partner_id, counters)


async def offer(conn: asyncpg.Connection, partner_id: int, offer_id: int, counters: Counters) -> dict[str, Any]:
    return (await _with_caps([_offer(await _open_offer(conn, partner_id, offer_id))], partner_id, counters))[0]


async def _open_offer(conn: asyncpg.Connection, partner_id: int, offer_id: int) -> asyncpg.Record:
    row = await conn.fetchrow(OPEN_OFFERS + " AND o.id = $2", partner_id, offer_id)
    if row is None:
        raise not_found("offer")
    return row


async def _with_caps(items: list[dict[str, Any]], partner_id: int, counters: Counters) -> list[dict[str, Any]]:
    """Each offer's caps as its partner sees them: its own per-partner caps with what it has used and what is
    left today, the offer-wide ones with their limit and whether they are reached (not the offer's volume).
    `caps` is null when the counters cannot be read; the offers are listed all the same."""
    wanted = [(item["id"], cap_usage.limits_of(item.pop("caps")), [partner_id]) for item in items]
    try:
        _, found = await cap_usage.usage(*counters, wanted)
    except (redis.exceptions.RedisError, OSError):
        found = None
    for item in items:
        if found is None:
            item["caps"] = None
            continue
        item["caps"] = [
            {k: row[k] for k in ("metric", "period", "scope", "limit", "used", "remaining")}
            if row["scope"] == "partner"
            else {**{k: row[k] for k in ("metric", "period", "scope", "limit")}, "reached": row["remaining"] == 0}
            for row in found[item["id"]]
        ]
    return items


def _link(row: asyncpg.Record, tracker_url: str) -> dict[str, Any]:
    code = row["code"]
    click = f"{tracker_url}/c/{code}"
    item = {
        "id": row["id"],
        "code": code,
        "offer_id": row["offer_id"],
        "offer": row["offer"],
        "status": row["status"],
        "created_at": row["created_at"].isoformat(),
        "click_url": click,
        "view_pixel_url": f"{tracker_url}/v/{code}",
        "snippets": {
            "text_link": f'<a href="{click}" rel="sponsored">{_html(row["offer"])}</a>',
            "view_pixel": f'<img src="{tracker_url}/v/{code}" width="1" height="1" alt="">',
        },
    }
    if row["creative_id"] is not None:
        item["banner_url"] = f"{tracker_url}/b/{code}"
        item["snippets"]["banner"] = (
            f'<a href="{click}" rel="sponsored"><img src="{tracker_url}/b/{code}" width="{row["width"]}" '
            f'height="{row["height"]}" alt="{_html(row["alt_text"] or row["offer"])}"></a>'
        )
    return item


def _html(text: str) -> str:
    import html

    return html.escape(text, quote=True)


_LINKS = """SELECT l.id, l.code, l.offer_id, l.status, l.created_at, l.creative_id, o.name AS offer, o.allowed_hosts,
                   c.width, c.height, c.alt_text
            FROM links l JOIN offers o ON o.id = l.offer_id LEFT JOIN creatives c ON c.id = l.creative_id
            WHERE l.partner_id = $1"""


async def links(conn: asyncpg.Connection, partner_id: int, tracker_url: str) -> list[dict[str, Any]]:
    return [_link(r, tracker_url) for r in await conn.fetch(_LINKS + " ORDER BY l.id", partner_id)]


async def link(conn: asyncpg.Connection, partner_id: int, link_id: int, tracker_url: str) -> dict[str, Any]:
    row = await conn.fetchrow(_LINKS + " AND l.id = $2", partner_id, link_id)
    if row is None:
        raise not_found("link")
    return _link(row, tracker_url)


async def create_link(
    conn: asyncpg.Connection, partner_id: int, offer_id: int, creative_id: int | None, tracker_url: str
) -> dict[str, Any]:
    """A new tracking link on an offer open to the partner (optionally with one of the offer's banners)."""
    await _open_offer(conn, partner_id, offer_id)
    if creative_id is not None:
        found = await conn.fetchval("SELECT 1 FROM creatives WHERE id = $1 AND offer_id = $2", creative_id, offer_id)
        if not found:
            raise invalid("creative_id", "no such creative on this offer")
    link_id = await conn.fetchval(
        "INSERT INTO links (code, partner_id, offer_id, creative_id) VALUES ($1, $2, $3, $4) RETURNING id",
        secrets.token_urlsafe(8),
        partner_id,
        offer_id,
        creative_id,
    )
    return await link(conn, partner_id, link_id, tracker_url)


async def build_link(
    conn: asyncpg.Connection, partner_id: int, link_id: int, tracker_url: str, subs: dict[str, str], deep: str | None
) -> dict[str, Any]:
    """The link builder: the tracking URL with sub ids and a deep link, the deep link checked against the
    offer's allowed hosts exactly as the tracker will check it."""
    row = await conn.fetchrow(_LINKS + " AND l.id = $2", partner_id, link_id)
    if row is None:
        raise not_found("link")
    query = dict(subs)
    if deep:
        if safe_deep_link(deep, normalize_hosts(row["allowed_hosts"])) is None:
            allowed = ", ".join(row["allowed_hosts"]) or "none"
            raise invalid("url", f"the deep link's host is not allowed for this offer (allowed: {allowed})")
        query["url"] = deep
    url = f"{tracker_url}/c/{row['code']}" + ("?" + urlencode(query) if query else "")
    return {"url": url, "snippet": f'<a href="{_html(url)}" rel="sponsored">{_html(row["offer"])}</a>'}


async def creatives(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT c.id, c.offer_id, c.name, c.content_type, c.width, c.height, c.alt_text FROM creatives c
           WHERE c.offer_id IN (SELECT id FROM ("""
        + OPEN_OFFERS
        + """) open_offers) ORDER BY c.id""",
        partner_id,
    )
    return [dict(r) for r in rows]
