"""What a partner may read and change. Every function takes the partner id from the credential
(`Principal.partner_id`), never from the request: another partner's object is simply not found."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any
from urllib.parse import urlencode

import asyncpg
import redis.asyncio
import redis.exceptions

from billing.money import format_amount
from portal import cap_usage
from portal.errors import ApiError, invalid, not_found
from tracker.macros import normalize_hosts, safe_deep_link

RANGES = {"today": 1, "7d": 7, "30d": 30}
GROUPS = ("day", "offer", "sub1", "country")
_MONEY = (
    "sales_minor",
    "commission_pending_minor",
    "commission_approved_minor",
    "commission_rejected_minor",
    "commission_reversed_minor",
)
_COUNTS = ("views", "clicks", "unique_clicks", "bots", "actions", "sales")


def first_day(range_: str, today: dt.date | None = None) -> dt.date:
    today = today or dt.datetime.now(dt.UTC).date()
    return today - dt.timedelta(days=RANGES[range_] - 1)


def _money_fields(row: dict[str, Any], currency: str) -> dict[str, Any]:
    for name in _MONEY:
        if name in row and row[name] is not None:
            label = "sales_amount" if name == "sales_minor" else name.removesuffix("_minor")
            row[label] = format_amount(int(row[name]), currency)
    return row


async def stats(conn: asyncpg.Connection, partner_id: int, range_: str, group: str) -> dict[str, Any]:
    """Views, clicks, bots, actions, sales and commission from billing's rollups (never a raw scan),
    totals per currency plus rows grouped by day, offer, sub id or country."""
    since = first_day(range_)
    key = {"day": "r.day::text", "offer": "o.name || ' #' || r.offer_id", "sub1": "r.sub1", "country": "r.country"}[
        group
    ]
    sums = ", ".join(f"sum(r.{c})::bigint AS {c}" for c in (*_COUNTS, *_MONEY))
    rows = await conn.fetch(
        f"""SELECT {key} AS key, o.currency, {sums} FROM rollups r JOIN offers o ON o.id = r.offer_id
            WHERE r.partner_id = $1 AND r.day >= $2 GROUP BY 1, 2 ORDER BY 1, 2""",
        partner_id,
        since,
    )
    totals: dict[str, dict[str, Any]] = {}
    out_rows = []
    for row in rows:
        item = dict(row)
        out_rows.append(_money_fields(dict(item), row["currency"]))
        total = totals.setdefault(row["currency"], {c: 0 for c in (*_COUNTS, *_MONEY)})
        for column in (*_COUNTS, *_MONEY):
            total[column] += int(row[column])
    bots = await conn.fetch(
        """SELECT reason, sum(events)::bigint AS events FROM rollup_bots WHERE partner_id = $1 AND day >= $2
           GROUP BY reason ORDER BY 2 DESC, 1""",
        partner_id,
        since,
    )
    actions = await conn.fetch(
        """SELECT action, sum(events)::bigint AS events FROM rollup_actions WHERE partner_id = $1 AND day >= $2
           GROUP BY action ORDER BY 2 DESC, 1""",
        partner_id,
        since,
    )
    return {
        "range": range_,
        "since": since.isoformat(),
        "group": group,
        "totals": [{"currency": c, **_money_fields(t, c)} for c, t in sorted(totals.items())],
        "rows": out_rows,
        "bots_by_reason": [dict(r) for r in bots],
        "actions_by_name": [dict(r) for r in actions],
    }


async def orders(conn: asyncpg.Connection, partner_id: int, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT c.event_id::text AS id, c.ts, c.kind, c.action, c.order_id, c.amount_minor, c.currency,
                  c.status, c.reason, c.refunded_minor, c.hold_until, c.customer_ref, o.name AS offer, o.id AS offer_id,
                  coalesce((SELECT sum(amount_minor) FROM commissions k WHERE k.event_id = c.event_id), 0)::bigint
                      AS commission_minor, o.currency AS offer_currency
           FROM conversions c JOIN offers o ON o.id = c.offer_id
           WHERE c.partner_id = $1 ORDER BY c.ts DESC LIMIT $2""",
        partner_id,
        limit,
    )
    out = []
    for row in rows:
        item = dict(row)
        currency = row["currency"] or row["offer_currency"]
        item["ts"] = row["ts"].isoformat()
        item["hold_until"] = row["hold_until"].isoformat()
        item["amount"] = format_amount(row["amount_minor"], currency) if row["amount_minor"] is not None else None
        item["commission"] = format_amount(row["commission_minor"], row["offer_currency"])
        item["currency"] = currency
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
           coalesce(pp_plan.fee_plan, o.fee_plan) AS fee_plan, o.caps
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


Counters = tuple[redis.asyncio.Redis, str]  # the Redis the tracker counts caps in, and its key prefix


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


# -- markup prices ---------------------------------------------------------------------------------

_PRODUCTS = """
    SELECT p.merchant_id, m.name AS merchant, p.sku, p.name,
           w.amount_minor AS wholesale_minor, w.currency, w.valid_from AS wholesale_from,
           r.amount_minor AS retail_minor, r.valid_from AS retail_from
    FROM products p
    JOIN merchants m ON m.id = p.merchant_id
    JOIN partner_programmes pp ON pp.merchant_id = p.merchant_id AND pp.partner_id = $1 AND pp.status = 'approved'
    JOIN LATERAL (SELECT amount_minor, currency, valid_from FROM prices
                  WHERE merchant_id = p.merchant_id AND sku = p.sku AND kind = 'wholesale' AND valid_from <= now()
                  ORDER BY valid_from DESC, id DESC LIMIT 1) w ON true
    LEFT JOIN LATERAL (SELECT amount_minor, valid_from FROM prices
                       WHERE merchant_id = p.merchant_id AND sku = p.sku AND kind = 'retail' AND partner_id = $1
                         AND valid_from <= now()
                       ORDER BY valid_from DESC, id DESC LIMIT 1) r ON true
"""


def _product(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    item["wholesale"] = format_amount(row["wholesale_minor"], row["currency"])
    item["retail"] = format_amount(row["retail_minor"], row["currency"]) if row["retail_minor"] is not None else None
    for name in ("wholesale_from", "retail_from"):
        item[name] = row[name].isoformat() if row[name] else None
    return item


async def prices(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(_PRODUCTS + " ORDER BY m.name, p.sku", partner_id)
    return [_product(r) for r in rows]


async def product_currency(conn: asyncpg.Connection, partner_id: int, merchant_id: int, sku: str) -> str:
    """The currency of a product the partner may price (in a programme that approved it); else not found."""
    row = await conn.fetchrow(_PRODUCTS + " WHERE p.merchant_id = $2 AND p.sku = $3", partner_id, merchant_id, sku)
    if row is None:
        raise not_found("product")
    return str(row["currency"])


async def set_price(
    conn: asyncpg.Connection, partner_id: int, merchant_id: int, sku: str, retail_minor: int
) -> dict[str, Any]:
    """A new retail price version, from now on; never below the wholesale price in force."""
    async with conn.transaction():
        row = await conn.fetchrow(
            _PRODUCTS + " WHERE p.merchant_id = $2 AND p.sku = $3 FOR UPDATE OF p", partner_id, merchant_id, sku
        )
        if row is None:
            raise not_found("product")
        if retail_minor < row["wholesale_minor"]:
            wholesale = format_amount(row["wholesale_minor"], row["currency"])
            raise ApiError(
                400,
                "below_wholesale",
                f"the retail price must be at least the wholesale price {wholesale} {row['currency']}",
            )
        await conn.execute(
            """INSERT INTO prices (merchant_id, sku, kind, partner_id, amount_minor, currency)
               VALUES ($1, $2, 'retail', $3, $4, $5)""",
            merchant_id,
            sku,
            partner_id,
            retail_minor,
            row["currency"],
        )
    row = await conn.fetchrow(_PRODUCTS + " WHERE p.merchant_id = $2 AND p.sku = $3", partner_id, merchant_id, sku)
    return _product(row)


async def price_history(conn: asyncpg.Connection, partner_id: int, merchant_id: int, sku: str) -> list[dict]:
    rows = await conn.fetch(
        """SELECT amount_minor, currency, valid_from FROM prices
           WHERE merchant_id = $1 AND sku = $2 AND kind = 'retail' AND partner_id = $3 ORDER BY valid_from, id""",
        merchant_id,
        sku,
        partner_id,
    )
    return [
        {
            "retail": format_amount(r["amount_minor"], r["currency"]),
            "currency": r["currency"],
            "valid_from": r["valid_from"].isoformat(),
        }
        for r in rows
    ]


async def price_feed(conn: asyncpg.Connection, merchant_id: int, partner_id: int) -> dict[str, Any]:
    """What the merchant's branded store shows for this partner: its current retail prices."""
    rows = await conn.fetch(_PRODUCTS + " WHERE p.merchant_id = $2 ORDER BY p.sku", partner_id, merchant_id)
    return {
        "merchant_id": merchant_id,
        "partner_id": partner_id,
        "items": [
            {
                "sku": r["sku"],
                "name": r["name"],
                "price": format_amount(r["retail_minor"], r["currency"]),
                "currency": r["currency"],
                "valid_from": r["retail_from"].isoformat(),
            }
            for r in rows
            if r["retail_minor"] is not None
        ],
    }


# -- statements -----------------------------------------------------------------------------------


def _statement(row: asyncpg.Record) -> dict[str, Any]:
    item = dict(row)
    for name in ("period_start", "period_end", "closed_at", "paid_at", "created_at"):
        item[name] = row[name].isoformat() if row[name] else None
    for name in ("total_minor", "carried_in_minor", "carried_out_minor", "lines_minor"):
        if name in item and row[name] is not None:
            label = "lines_total" if name == "lines_minor" else name.removesuffix("_minor")
            item[label] = format_amount(row[name], row["currency"])
    return item


_STATEMENTS = """SELECT s.id, s.number, s.merchant_id, m.name AS merchant, s.currency, s.period_start, s.period_end,
                        s.status, s.carried_in_minor, s.total_minor, s.payable, s.carried_out_minor, s.closed_at,
                        s.paid_at, s.created_at,
                        (SELECT coalesce(sum(amount_minor), 0) FROM ledger_lines l WHERE l.statement_id = s.id)::bigint
                            AS lines_minor,
                        (SELECT count(*) FROM ledger_lines l WHERE l.statement_id = s.id) AS line_count
                 FROM statements s JOIN merchants m ON m.id = s.merchant_id"""


async def statements(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(_STATEMENTS + " WHERE s.partner_id = $1 ORDER BY s.period_start DESC, s.id", partner_id)
    return [_statement(r) for r in rows]


async def statement(conn: asyncpg.Connection, partner_id: int, statement_id: int) -> dict[str, Any]:
    row = await conn.fetchrow(_STATEMENTS + " WHERE s.partner_id = $1 AND s.id = $2", partner_id, statement_id)
    if row is None:
        raise not_found("statement")
    item = _statement(row)
    lines = await conn.fetch(
        """SELECT l.source AS event_id, l.kind, l.amount_minor, l.basis, l.occurred_at, o.name AS offer
           FROM ledger_lines l JOIN offers o ON o.id = l.offer_id WHERE l.statement_id = $1
           ORDER BY l.occurred_at, l.id""",
        statement_id,
    )
    item["lines"] = [
        {
            **dict(r),
            "occurred_at": r["occurred_at"].isoformat(),
            "amount": format_amount(r["amount_minor"], row["currency"]),
        }
        for r in lines
    ]
    return item


async def owns_statement(conn: asyncpg.Connection, partner_id: int, statement_id: int) -> None:
    if not await conn.fetchval("SELECT 1 FROM statements WHERE id = $1 AND partner_id = $2", statement_id, partner_id):
        raise not_found("statement")
