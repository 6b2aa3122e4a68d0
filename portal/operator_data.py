"""What an operator may read and change: the programme of its merchant (a network operator: every
merchant). Every change writes an audit row in the same transaction.

Here: the helpers every operator module shares (audit, scope), merchants and offers. Partners, links and
creatives are in portal/operator_partners.py; products, rates, conversions, reports, statements and the audit
log in portal/operator_reports.py; cap usage in portal/operator_caps.py."""

from __future__ import annotations

import datetime as dt
import secrets
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from kernel import caps as tracker_caps
from kernel import sources as tracker_sources
from kernel.macros import Template
from kernel.money import format_amount
from kernel.plans import build_plan
from kernel.pricing import FeeError
from portal import notifications, terms_schema, validate
from portal.auth import Principal
from portal.errors import ApiError, invalid, not_found

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


def iso_row(row: dict[str, Any]) -> dict[str, Any]:
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
    item = iso_row(dict(row))
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


def in_scope(who: Principal, alias: str = "merchant_id") -> tuple[str, list[Any]]:
    own = who.merchant_scope()
    return (f"{alias} = $1", [own]) if own is not None else ("$1::bigint IS NULL", [None])


_MERCHANT_COLUMNS = (
    "id, slug, name, currency, rounding, statement_currency, branding, address, payment_terms, default_locale,"
    " created_at"
)

# -- merchants ------------------------------------------------------------------------------------


async def merchants(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    where, args = in_scope(who, "id")
    rows = await conn.fetch(
        f"SELECT {_MERCHANT_COLUMNS} FROM merchants WHERE {where} ORDER BY id",
        *args,
    )
    return [iso_row(dict(r)) for r in rows]


async def merchant(conn: asyncpg.Connection, who: Principal, merchant_id: int) -> dict[str, Any]:
    scope_merchant(who, merchant_id)
    row = await conn.fetchrow(
        f"SELECT {_MERCHANT_COLUMNS} FROM merchants WHERE id = $1",
        merchant_id,
    )
    if row is None:
        raise not_found("merchant")
    return iso_row(dict(row))


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
    where, args = in_scope(who, "o.merchant_id")
    rows = await conn.fetch(f"SELECT {OFFER_COLUMNS} FROM offers o WHERE {where} ORDER BY o.id", *args)
    return [_offer_out(r) for r in rows]


async def offer(conn: asyncpg.Connection, who: Principal, offer_id: int) -> dict[str, Any]:
    where, args = in_scope(who, "o.merchant_id")
    row = await conn.fetchrow(f"SELECT {OFFER_COLUMNS} FROM offers o WHERE {where} AND o.id = $2", *args, offer_id)
    if row is None:
        raise not_found("offer")
    return _offer_out(row)


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
