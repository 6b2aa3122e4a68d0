"""What an operator may read and change: the programme of its merchant (a network operator: every
merchant). Every change writes an audit row in the same transaction."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from decimal import Decimal
from typing import Any

import asyncpg
import orjson
import redis.exceptions

from billing.public import figures
from billing.public import statements as billing_statements
from kernel import caps as tracker_caps
from kernel import sources as tracker_sources
from kernel.macros import Template
from kernel.money import format_amount
from kernel.plans import build_plan
from kernel.pricing import FeeError
from kernel.redis.pyclient import Lazy
from portal import cap_usage, notifications, partner_data, terms_schema, validate
from portal.auth import Principal
from portal.errors import ApiError, invalid, not_found
from portal.images import ImageError, sniff

OFFER_COLUMNS = """o.id, o.merchant_id, o.name, o.status, o.visibility, o.destination_url, o.fallback_url,
    o.allowed_hosts, o.attribution_window_s, o.hold_days, o.repeat_actions, o.currency, o.fee_plan, o.caps,
    o.postback_security, o.postback_secret, o.conversion_sources, o.pixel_max_amount_minor, o.tune_token,
    o.postback_ip_allowlist::text[] AS postback_ip_allowlist, o.starts_at, o.ends_at, o.created_at, o.updated_at"""


async def audit(
    conn: asyncpg.Connection,
    who: Principal,
    merchant_id: int | None,
    action: str,
    kind: str,
    object_id: Any,
    detail: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        """INSERT INTO audit_log (actor_user_id, actor_email, merchant_id, action, object_type, object_id, detail)
           VALUES ($1, $2, $3, $4, $5, $6, $7)""",
        who.user_id or None,  # 0: the command line, which has no user row
        who.email,
        merchant_id,
        action,
        kind,
        str(object_id),
        orjson.dumps(detail or {}, default=str).decode(),
    )


def _iso(row: dict[str, Any]) -> dict[str, Any]:
    for key, value in row.items():
        if isinstance(value, dt.datetime | dt.date):
            row[key] = value.isoformat()
        elif isinstance(value, Decimal):
            row[key] = str(value)
        elif isinstance(value, str) and key in ("fee_plan", "caps", "branding", "detail", "conversion_sources"):
            row[key] = orjson.loads(value)
    return row


def _offer_out(row: asyncpg.Record) -> dict[str, Any]:
    """An offer as operators see it: its conversion sources in full (defaults filled in), the pixel maximum
    as an amount."""
    item = _iso(dict(row))
    item["conversion_sources"] = tracker_sources.stored(tracker_sources.parse(item["conversion_sources"]))
    minor = item.pop("pixel_max_amount_minor")
    item["pixel_max_amount"] = format_amount(minor, item["currency"]) if minor is not None else None
    return item


def scope_merchant(who: Principal, merchant_id: int | None) -> int:
    """The merchant an operator acts on: its own, or (network operators) the one named."""
    own = who.merchant_scope()
    if own is not None:
        if merchant_id is not None and merchant_id != own:
            raise not_found("merchant")
        return own
    if merchant_id is None:
        raise invalid("merchant_id", "is required for a network operator")
    return merchant_id


def _in_scope(who: Principal, alias: str = "merchant_id") -> tuple[str, list[Any]]:
    own = who.merchant_scope()
    return (f"{alias} = $1", [own]) if own is not None else ("$1::bigint IS NULL", [None])


_MERCHANT_COLUMNS = (
    "id, slug, name, currency, rounding, statement_currency, branding, address, payment_terms, default_locale,"
    " created_at"
)

# -- merchants ------------------------------------------------------------------------------------


async def merchants(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = _in_scope(who, "id")
    rows = await conn.fetch(
        f"SELECT {_MERCHANT_COLUMNS} FROM merchants WHERE {where} ORDER BY id",
        *args,
    )
    return [_iso(dict(r)) for r in rows]


async def merchant(conn: asyncpg.Connection, who: Principal, merchant_id: int) -> dict[str, Any]:
    scope_merchant(who, merchant_id)
    row = await conn.fetchrow(
        f"SELECT {_MERCHANT_COLUMNS} FROM merchants WHERE id = $1",
        merchant_id,
    )
    if row is None:
        raise not_found("merchant")
    return _iso(dict(row))


async def create_merchant(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    if who.role != "network":
        raise ApiError(403, "forbidden", "only a network operator creates merchants")
    async with conn.transaction():
        try:
            merchant_id = await conn.fetchval(
                """INSERT INTO merchants (slug, name, currency, rounding, branding, statement_currency, address,
                                         payment_terms, default_locale)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id""",
                values["slug"],
                values["name"],
                values.get("currency", "USD"),
                values.get("rounding", "half_even"),
                orjson.dumps(values.get("branding", {})).decode(),
                values.get("statement_currency", "own"),
                values.get("address"),
                values.get("payment_terms"),
                values.get("default_locale", "en"),
            )
        except asyncpg.UniqueViolationError as exc:
            raise ApiError(409, "conflict", f"a merchant with slug {values['slug']!r} exists") from exc
        await audit(conn, who, merchant_id, "create", "merchant", merchant_id, values)
    return await merchant(conn, who, merchant_id)


async def update_merchant(conn: asyncpg.Connection, who: Principal, merchant_id: int, values: dict[str, Any]) -> dict:
    scope_merchant(who, merchant_id)
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT name, branding, statement_currency, address, payment_terms, default_locale FROM merchants
               WHERE id = $1 FOR UPDATE""",
            merchant_id,
        )
        if row is None:
            raise not_found("merchant")
        branding = {**orjson.loads(row["branding"]), **values.get("branding", {})}
        await conn.execute(
            """UPDATE merchants SET name = $2, branding = $3, statement_currency = $4, address = $5, payment_terms = $6,
                                    default_locale = $7
               WHERE id = $1""",
            merchant_id,
            values.get("name", row["name"]),
            orjson.dumps(branding).decode(),
            values.get("statement_currency", row["statement_currency"]),
            values.get("address", row["address"]),
            values.get("payment_terms", row["payment_terms"]),
            values.get("default_locale", row["default_locale"]),
        )
        await audit(conn, who, merchant_id, "update", "merchant", merchant_id, values)
    return await merchant(conn, who, merchant_id)


# -- offers ---------------------------------------------------------------------------------------


def check_offer(values: dict[str, Any], currency: str, rounding: str = "half_even") -> None:
    """Refuse what the tracker or billing could not use: an unsafe destination, caps or a fee plan outside their
    schemas (schemas/offers/), tiers that do not rise."""
    for name in ("destination_url", "fallback_url"):
        if name in values:
            try:
                Template(values[name])
            except ValueError as exc:
                raise invalid(name, str(exc)) from exc
    if "caps" in values:
        terms_schema.check("caps", "caps", values["caps"])
        try:
            tracker_caps.parse(values["caps"])
        except (tracker_caps.CapConfigError, TypeError, AttributeError) as exc:
            raise terms_schema.refusal("caps", "/caps", str(exc) or "malformed caps") from exc
    if "fee_plan" in values:
        terms_schema.check("fee_plan", "fee_plan", values["fee_plan"])
        _build(values["fee_plan"], currency, rounding)
    if values.get("starts_at") and values.get("ends_at") and values["ends_at"] <= values["starts_at"]:
        raise invalid("ends_at", "must be after starts_at")


def _build(plan: dict[str, Any], currency: str, rounding: str) -> None:
    """What the schema cannot say (tier thresholds rise strictly), as billing itself checks it."""
    try:
        build_plan(currency, rounding, plan)
    except (FeeError, TypeError, AttributeError, KeyError) as exc:
        detail = getattr(exc, "detail", None) or str(exc) or "malformed fee plan"
        raise terms_schema.refusal("fee_plan", "/fee_plan/tiers" if "tier" in detail else "/fee_plan", detail) from exc


async def offers(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = _in_scope(who, "o.merchant_id")
    rows = await conn.fetch(f"SELECT {OFFER_COLUMNS} FROM offers o WHERE {where} ORDER BY o.id", *args)
    return [_offer_out(r) for r in rows]


async def offer(conn: asyncpg.Connection, who: Principal, offer_id: int) -> dict[str, Any]:
    where, args = _in_scope(who, "o.merchant_id")
    row = await conn.fetchrow(f"SELECT {OFFER_COLUMNS} FROM offers o WHERE {where} AND o.id = $2", *args, offer_id)
    if row is None:
        raise not_found("offer")
    return _offer_out(row)


async def offer_caps(
    conn: asyncpg.Connection, client: Lazy, prefix: str, who: Principal, offer_id: int
) -> dict[str, Any]:
    """Each cap of an offer with what the tracker has counted against it: today's (UTC) for daily caps;
    per partner, one row for each partner with a link to the offer."""
    where, args = _in_scope(who, "o.merchant_id")
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


_OFFER_FIELDS = (
    "name",
    "status",
    "visibility",
    "destination_url",
    "fallback_url",
    "allowed_hosts",
    "attribution_window_s",
    "hold_days",
    "repeat_actions",
    "fee_plan",
    "caps",
    "postback_security",
    "postback_ip_allowlist",
    "starts_at",
    "ends_at",
    "conversion_sources",
    "pixel_max_amount_minor",
    "tune_token",
)


def _audited(values: dict[str, Any]) -> dict[str, Any]:
    """What the audit log keeps of an offer change: never a token itself."""
    if values.get("tune_token") not in (None, "none", "generate"):
        return {**values, "tune_token": "(set)"}
    return values


def _offer_args(values: dict[str, Any], currency: str) -> dict[str, Any]:
    """The offer's columns from checked values; the pixel maximum in minor units of the offer's currency."""
    values = dict(values)
    if "pixel_max_amount" in values:
        text = values.pop("pixel_max_amount")
        minor = None if text == "none" else validate.money("pixel_max_amount", text, currency)
        values["pixel_max_amount_minor"] = minor
        if values["pixel_max_amount_minor"] == 0:
            raise invalid("pixel_max_amount", 'must be above zero ("none" for no maximum)')
    if "tune_token" in values:
        token = values["tune_token"]
        values["tune_token"] = None if token == "none" else secrets.token_urlsafe(32) if token == "generate" else token
    out = {}
    for name in _OFFER_FIELDS:
        if name in values:
            value = values[name]
            out[name] = orjson.dumps(value).decode() if name in ("fee_plan", "caps", "conversion_sources") else value
    return out


async def create_offer(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    merchant_id = scope_merchant(who, values.pop("merchant_id", None))
    merchant_row = await conn.fetchrow("SELECT currency, rounding FROM merchants WHERE id = $1", merchant_id)
    if merchant_row is None:
        raise not_found("merchant")
    currency = values.setdefault("currency", merchant_row["currency"])
    check_offer(values, currency, merchant_row["rounding"])
    args = _offer_args(values, currency)
    columns = ["merchant_id", "currency", *args]
    params = [merchant_id, currency, *args.values()]
    async with conn.transaction():
        offer_id = await conn.fetchval(
            f"INSERT INTO offers ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})"
            " RETURNING id",
            *params,
        )
        await audit(conn, who, merchant_id, "create", "offer", offer_id, _audited(values))
        if values.get("visibility", "public") in ("public", "partners"):
            await _tell_partners(conn, merchant_id, offer_id)
    return await offer(conn, who, offer_id)


async def _tell_partners(conn: asyncpg.Connection, merchant_id: int, offer_id: int) -> None:
    """A new offer open to a programme's partners: each approved partner is notified."""
    row = await conn.fetchrow(
        "SELECT o.name, m.name AS merchant FROM offers o JOIN merchants m ON m.id = o.merchant_id WHERE o.id = $1",
        offer_id,
    )
    partners = await conn.fetch(
        "SELECT partner_id FROM partner_programmes WHERE merchant_id = $1 AND status = 'approved'", merchant_id
    )
    for p in partners:
        params = {"merchant": row["merchant"], "offer": row["name"]}
        await notifications.notify(conn, p["partner_id"], "new_offer", params, "/offers", merchant_id)


async def update_offer(conn: asyncpg.Connection, who: Principal, offer_id: int, values: dict[str, Any]) -> dict:
    current = await offer(conn, who, offer_id)
    rounding = await conn.fetchval("SELECT rounding FROM merchants WHERE id = $1", current["merchant_id"])
    merged = {"starts_at": current["starts_at"], "ends_at": current["ends_at"]} | values
    if isinstance(merged.get("starts_at"), str):
        merged["starts_at"] = dt.datetime.fromisoformat(merged["starts_at"])
    if isinstance(merged.get("ends_at"), str):
        merged["ends_at"] = dt.datetime.fromisoformat(merged["ends_at"])
    check_offer(merged, current["currency"], rounding)
    args = _offer_args(values, current["currency"])
    if not args:
        return current
    sets = ", ".join(f"{name} = ${i + 2}" for i, name in enumerate(args))
    async with conn.transaction():
        await conn.execute(f"UPDATE offers SET {sets}, updated_at = now() WHERE id = $1", offer_id, *args.values())
        await audit(conn, who, current["merchant_id"], "update", "offer", offer_id, _audited(values))
    return await offer(conn, who, offer_id)


async def set_partner_plan(
    conn: asyncpg.Connection, who: Principal, offer_id: int, partner_id: int, plan: dict[str, Any]
) -> None:
    """A per-partner fee plan override on one offer (the partner must be in the merchant's programme)."""
    current = await offer(conn, who, offer_id)
    member = await conn.fetchval(
        "SELECT 1 FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2",
        partner_id,
        current["merchant_id"],
    )
    if not member:
        raise not_found("partner")
    terms_schema.check("partner_plan", "fee_plan", plan)
    rounding = await conn.fetchval("SELECT rounding FROM merchants WHERE id = $1", current["merchant_id"])
    _build({**current["fee_plan"], **plan}, current["currency"], rounding)
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO offer_partner_plans (offer_id, partner_id, fee_plan) VALUES ($1, $2, $3)
               ON CONFLICT (offer_id, partner_id) DO UPDATE SET fee_plan = EXCLUDED.fee_plan""",
            offer_id,
            partner_id,
            orjson.dumps(plan).decode(),
        )
        await audit(
            conn,
            who,
            current["merchant_id"],
            "set_partner_plan",
            "offer",
            offer_id,
            {"partner_id": partner_id, "fee_plan": plan},
        )


# -- partners -------------------------------------------------------------------------------------


async def partners(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = _in_scope(who, "pp.merchant_id")
    rows = await conn.fetch(
        f"""SELECT p.id, p.name, p.email, p.currency, p.min_payout_minor, pp.merchant_id, pp.status, pp.created_at
            FROM partners p JOIN partner_programmes pp ON pp.partner_id = p.id WHERE {where}
            ORDER BY pp.merchant_id, p.id""",
        *args,
    )
    return [_iso(dict(r)) for r in rows]


async def enrol_partner(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """The machine owner's `clickmint admin partner add`: the partner (found by e-mail, or made) joins the
    programme at once. No operator can do this: operators invite (portal/invitations.py) and partners accept."""
    if who.via != "cli":
        raise ApiError(403, "forbidden", "operators invite partners; only the command line enrols them directly")
    merchant_id = scope_merchant(who, values.get("merchant_id"))
    async with conn.transaction():
        partner_id = await conn.fetchval("SELECT id FROM partners WHERE email = $1", values["email"])
        if partner_id is None:
            partner_id = await conn.fetchval(
                """INSERT INTO partners (name, email, currency, min_payout_minor, address) VALUES ($1, $2, $3, $4, $5)
                   RETURNING id""",
                values["name"],
                values["email"],
                values.get("currency", "USD"),
                values.get("min_payout_minor", 0),
                values.get("address"),
            )
        await conn.execute(
            """INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, $3)
               ON CONFLICT (partner_id, merchant_id) DO NOTHING""",
            partner_id,
            merchant_id,
            values.get("status", "approved"),
        )
        await audit(conn, who, merchant_id, "create", "partner", partner_id, values)
    return {"id": partner_id, "merchant_id": merchant_id}


async def set_partner_status(
    conn: asyncpg.Connection, who: Principal, partner_id: int, merchant_id: int | None, status: str
) -> dict[str, Any]:
    merchant_id = scope_merchant(who, merchant_id)
    async with conn.transaction():
        old = await conn.fetchval(
            "SELECT status FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2 FOR UPDATE",
            partner_id,
            merchant_id,
        )
        if old is None:
            raise not_found("partner")
        await conn.execute(
            "UPDATE partner_programmes SET status = $3 WHERE partner_id = $1 AND merchant_id = $2",
            partner_id,
            merchant_id,
            status,
        )
        await audit(conn, who, merchant_id, "set_status", "partner", partner_id, {"from": old, "to": status})
        if status == "approved" and old != "approved":
            name = await conn.fetchval("SELECT name FROM merchants WHERE id = $1", merchant_id)
            await notifications.notify(conn, partner_id, "approved", {"merchant": name}, "/offers", merchant_id)
    return {"id": partner_id, "merchant_id": merchant_id, "status": status}


# -- links and creatives --------------------------------------------------------------------------


async def links(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = _in_scope(who, "o.merchant_id")
    rows = await conn.fetch(
        f"""SELECT l.id, l.code, l.partner_id, l.offer_id, l.creative_id, l.status, l.created_at FROM links l
            JOIN offers o ON o.id = l.offer_id WHERE {where} ORDER BY l.id""",
        *args,
    )
    return [_iso(dict(r)) for r in rows]


async def create_link(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    current = await offer(conn, who, values["offer_id"])
    member = await conn.fetchval(
        "SELECT 1 FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2",
        values["partner_id"],
        current["merchant_id"],
    )
    if not member:
        raise not_found("partner")
    if values.get("creative_id") is not None and not await conn.fetchval(
        "SELECT 1 FROM creatives WHERE id = $1 AND offer_id = $2", values["creative_id"], values["offer_id"]
    ):
        raise not_found("creative")  # only a banner of this offer; another merchant's is not even there
    async with conn.transaction():
        row = await conn.fetchrow(
            "INSERT INTO links (code, partner_id, offer_id, creative_id) VALUES ($1, $2, $3, $4) RETURNING *",
            secrets.token_urlsafe(8),
            values["partner_id"],
            values["offer_id"],
            values.get("creative_id"),
        )
        await audit(conn, who, current["merchant_id"], "create", "link", row["id"], values)
    return _iso(dict(row))


async def set_link_status(conn: asyncpg.Connection, who: Principal, link_id: int, status: str) -> dict[str, Any]:
    where, args = _in_scope(who, "o.merchant_id")
    async with conn.transaction():
        row = await conn.fetchrow(
            f"""UPDATE links l SET status = ${len(args) + 1} FROM offers o
                WHERE o.id = l.offer_id AND {where} AND l.id = ${len(args) + 2} RETURNING l.*, o.merchant_id""",
            *args,
            status,
            link_id,
        )
        if row is None:
            raise not_found("link")
        await audit(conn, who, row["merchant_id"], "set_status", "link", link_id, {"status": status})
    return _iso(dict(row))


async def creatives(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = _in_scope(who, "o.merchant_id")
    rows = await conn.fetch(
        f"""SELECT c.id, c.offer_id, c.name, c.content_type, c.width, c.height, c.sha256, c.alt_text, c.created_at,
                   octet_length(c.body) AS bytes
            FROM creatives c JOIN offers o ON o.id = c.offer_id WHERE {where} ORDER BY c.id""",
        *args,
    )
    return [_iso(dict(r)) for r in rows]


async def create_creative(
    conn: asyncpg.Connection, who: Principal, offer_id: int, name: str, alt: str, body: bytes
) -> dict[str, Any]:
    """A banner on one of the operator's offers; its type and size are read from its bytes."""
    current = await offer(conn, who, offer_id)  # another merchant's offer is not found, whatever the bytes
    if not isinstance(body, bytes) or not body:
        raise invalid("image", "choose a file")
    try:
        content_type, width, height = sniff(body)
    except ImageError as exc:
        raise ApiError(400, "invalid_image", str(exc)) from exc
    async with conn.transaction():
        creative_id = await conn.fetchval(
            """INSERT INTO creatives (offer_id, name, content_type, width, height, body, sha256, alt_text)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
            offer_id,
            name,
            content_type,
            width,
            height,
            body,
            hashlib.sha256(body).hexdigest(),
            alt,
        )
        await audit(
            conn,
            who,
            current["merchant_id"],
            "create",
            "creative",
            creative_id,
            {"offer_id": offer_id, "name": name, "content_type": content_type, "bytes": len(body)},
        )
    return {"id": creative_id, "offer_id": offer_id, "content_type": content_type, "width": width, "height": height}


# -- products, wholesale prices, currency rates ---------------------------------------------------


async def products(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = _in_scope(who, "p.merchant_id")
    rows = await conn.fetch(
        f"""SELECT p.merchant_id, p.sku, p.name, w.amount_minor AS wholesale_minor, w.currency, w.valid_from
            FROM products p LEFT JOIN LATERAL (
                SELECT amount_minor, currency, valid_from FROM prices WHERE merchant_id = p.merchant_id AND sku = p.sku
                  AND kind = 'wholesale' AND valid_from <= now() ORDER BY valid_from DESC, id DESC LIMIT 1) w ON true
            WHERE {where} ORDER BY p.merchant_id, p.sku""",
        *args,
    )
    return [
        _iso({**dict(r), "wholesale": format_amount(r["wholesale_minor"], r["currency"]) if r["currency"] else None})
        for r in rows
    ]


async def set_product(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    """Create or rename a product and record a new wholesale price version from now (or `valid_from`).
    `wholesale` is the decimal text the API, pages and command line take ("12.50")."""
    merchant_id = scope_merchant(who, values.get("merchant_id"))
    wholesale_minor = validate.money("wholesale", values["wholesale"], values["currency"])
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO products (merchant_id, sku, name) VALUES ($1, $2, $3)
               ON CONFLICT (merchant_id, sku) DO UPDATE SET name = EXCLUDED.name""",
            merchant_id,
            values["sku"],
            values["name"],
        )
        await conn.execute(
            """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency, valid_from)
               VALUES ($1, $2, 'wholesale', $3, $4, coalesce($5, now()))""",
            merchant_id,
            values["sku"],
            wholesale_minor,
            values["currency"],
            values.get("valid_from"),
        )
        await audit(conn, who, merchant_id, "set_price", "product", values["sku"], values)
    return {"merchant_id": merchant_id, "sku": values["sku"]}


async def rates(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = _in_scope(who, "merchant_id")
    rows = await conn.fetch(
        f"""SELECT id, merchant_id, base, quote, rate, valid_from FROM currency_rates WHERE {where}
            ORDER BY valid_from DESC, id DESC""",
        *args,
    )
    return [_iso(dict(r)) for r in rows]


async def add_rate(conn: asyncpg.Connection, who: Principal, values: dict[str, Any]) -> dict[str, Any]:
    merchant_id = scope_merchant(who, values.get("merchant_id"))
    if values["base"] == values["quote"]:
        raise invalid("quote", "must differ from base")
    async with conn.transaction():
        rate_id = await conn.fetchval(
            """INSERT INTO currency_rates (merchant_id, base, quote, rate, valid_from)
               VALUES ($1, $2, $3, $4, coalesce($5, now())) RETURNING id""",
            merchant_id,
            values["base"],
            values["quote"],
            values["rate"],
            values.get("valid_from"),
        )
        await audit(conn, who, merchant_id, "create", "currency_rate", rate_id, values)
    return {
        "id": rate_id,
        "merchant_id": merchant_id,
        "base": values["base"],
        "quote": values["quote"],
        "rate": str(values["rate"]),
    }


# -- conversions: what came in, by which channel, and why some were refused ------------------------


async def conversions(
    conn: asyncpg.Connection, who: Principal, status: str | None, reason: str | None, limit: int
) -> dict[str, list[dict[str, Any]]]:
    """The latest conversions of the operator's offers with their channel and status (a refused one with its
    code: source_not_allowed, superseded, duplicate_order, ...), and refunds with why one did not count."""
    where, args = _in_scope(who, "o.merchant_id")
    n = len(args)
    rows = await conn.fetch(
        f"""SELECT c.event_id::text AS event_id, c.ts, c.kind, c.offer_id, c.partner_id, c.order_id, c.action,
                   c.amount_minor, coalesce(c.currency, o.currency) AS currency, c.status, c.reason, c.via,
                   c.authenticated
            FROM conversions c JOIN offers o ON o.id = c.offer_id
            WHERE {where} AND (${n + 1}::text IS NULL OR c.status = ${n + 1})
              AND (${n + 2}::text IS NULL OR c.reason = ${n + 2})
            ORDER BY c.ts DESC LIMIT ${n + 3}""",
        *args,
        status,
        reason,
        limit,
    )
    refunds = await conn.fetch(
        f"""SELECT r.event_id::text AS event_id, r.ts, r.offer_id, r.order_id, r.amount_minor,
                   coalesce(r.currency, o.currency) AS currency, r.reason, r.conversion_id IS NOT NULL AS applied
            FROM refunds r JOIN offers o ON o.id = r.offer_id
            WHERE {where} AND (${n + 1}::text IS NULL OR r.reason = ${n + 1})
            ORDER BY r.ts DESC LIMIT ${n + 2}""",
        *args,
        reason,
        limit,
    )

    def money(row: asyncpg.Record) -> dict[str, Any]:
        item = _iso(dict(row))
        minor = item.pop("amount_minor")
        item["amount"] = format_amount(minor, row["currency"]) if minor is not None else None
        return item

    return {"conversions": [money(r) for r in rows], "refunds": [money(r) for r in refunds]}


# -- reports, statements, audit -------------------------------------------------------------------


async def _names(conn: asyncpg.Connection, table: str, ids: list[int]) -> dict[str, str]:
    rows = await conn.fetch(f"SELECT id, name FROM {table} WHERE id = ANY($1::bigint[])", ids) if ids else []
    return {str(r["id"]): r["name"] for r in rows}


REPORT_GROUPS = ("partner_offer", "partner", "offer", "day", "sub1", "country", "period")


async def report(
    conn: asyncpg.Connection, who: Principal, since: dt.date, group: str = "partner_offer", until: dt.date | None = None
) -> list[dict[str, Any]]:
    """The programme by partner and offer (or another `group`): traffic from the rollups, sales and commission
    per currency from the records statements are made of (billing/figures.py), as partners see theirs."""
    until = until or dt.datetime.now(dt.UTC).date()
    own = who.merchant_scope()
    counts = await partner_data.traffic_counts(
        conn,
        "($1::bigint IS NULL OR o.merchant_id = $1) AND r.partner_id <> 0 AND r.day >= $2 AND r.day <= $3",
        [own, since, until],
        group,
    )
    money = await figures.commission(conn, figures.Scope(merchant_id=own), since, until, group)
    rows, _, _ = partner_data.assemble(counts, money)
    ids = [int(part) for row in rows for part in row["key"].split(":") if part.isdigit()]
    partners = await _names(conn, "partners", ids if group in ("partner_offer", "partner") else [])
    offers = await _names(conn, "offers", ids if group in ("partner_offer", "offer") else [])
    for row in rows:
        key = row["key"]
        if group == "partner_offer":
            partner_id, offer_id = key.split(":")
            row.update(partner_id=int(partner_id), partner=partners.get(partner_id, ""))
            row.update(offer_id=int(offer_id), offer=offers.get(offer_id, ""))
        elif group == "partner":
            row.update(partner_id=int(key), partner=partners.get(key, ""))
        elif group == "offer":
            row.update(offer_id=int(key), offer=offers.get(key, ""))
    return rows


async def statements(conn: asyncpg.Connection, who: Principal, period_start: dt.date | None) -> list[dict]:
    where, args = _in_scope(who, "s.merchant_id")
    rows = await conn.fetch(
        f"""SELECT s.id, s.number, s.merchant_id, s.partner_id, p.name AS partner, s.currency, s.period_start,
                   s.period_end, s.status, s.total_minor, s.payable, s.carried_out_minor, s.closed_at, s.paid_at
            FROM statements s JOIN partners p ON p.id = s.partner_id
            WHERE {where} AND (${len(args) + 1}::date IS NULL OR s.period_start = ${len(args) + 1})
            ORDER BY s.period_start DESC, s.number""",
        *args,
        period_start,
    )
    return [_iso(dict(r)) for r in rows]


async def owns_statement(conn: asyncpg.Connection, who: Principal, statement_id: int) -> int:
    where, args = _in_scope(who, "merchant_id")
    merchant_id = await conn.fetchval(
        f"SELECT merchant_id FROM statements WHERE {where} AND id = ${len(args) + 1}", *args, statement_id
    )
    if merchant_id is None:
        raise not_found("statement")
    return merchant_id


async def finish_statement(
    conn: asyncpg.Connection, who: Principal, statement_id: int, action: str, sealer: Any = None
) -> dict:
    """Close a statement (it becomes immutable) or mark a closed one paid; audited. `sealer`: see
    billing/invoices.py (a self-billed invoice prints the partner's sealed VAT number)."""
    merchant_id = await owns_statement(conn, who, statement_id)
    async with conn.transaction():
        now = dt.datetime.now(dt.UTC)
        try:
            if action == "close":
                await billing_statements.close(conn, statement_id, now, sealer)
            else:
                await billing_statements.mark_paid(conn, statement_id, now)
        except billing_statements.StatementError as exc:
            raise ApiError(409, "conflict", str(exc)) from exc
        await audit(conn, who, merchant_id, "close" if action == "close" else "mark_paid", "statement", statement_id)
        if action == "close":
            row = await conn.fetchrow("SELECT partner_id, number FROM statements WHERE id = $1", statement_id)
            await notifications.notify(
                conn,
                row["partner_id"],
                "statement_ready",
                {"number": row["number"]},
                f"/statements/{statement_id}",
                merchant_id,
            )
    return {"id": statement_id, "status": "closed" if action == "close" else "paid"}


async def audit_log(conn: asyncpg.Connection, who: Principal, limit: int) -> list[dict[str, Any]]:
    where, args = _in_scope(who, "merchant_id")
    rows = await conn.fetch(
        f"""SELECT id, at, actor_email, merchant_id, action, object_type, object_id, detail FROM audit_log
            WHERE {where} ORDER BY id DESC LIMIT ${len(args) + 1}""",
        *args,
        limit,
    )
    return [_iso(dict(r)) for r in rows]
