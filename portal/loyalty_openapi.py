"""The loyalty routes' part of the OpenAPI document (portal/loyalty_api.py serves them)."""

from __future__ import annotations

import re
from typing import Any

_ERR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "1 to 200 characters, unique per intended operation. A replay with the same key and body "
    "answers the first answer again (status and body); the same key with another body answers 409 "
    "idempotency_key_reused. A refused request stores nothing under the key.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 200},
}
_SECURITY: list[dict[str, list[str]]] = [{"loyaltyKey": []}]
_CUSTOMER = {"type": "string", "minLength": 1, "maxLength": 255, "description": "the shop's customer id"}

MEMBER = {
    "type": "object",
    "properties": {
        "customer": _CUSTOMER,
        "balance": {"type": "integer", "description": "points available (negative: reversed points already spent)"},
        "value_minor": {"type": "integer", "description": "what the balance is worth, minor units, rounded down"},
        "currency": {"type": "string"},
        "pending": {"type": "integer", "description": "points of purchases still in their hold"},
        "tier": {"type": ["string", "null"]},
        "tier_progress": {
            "type": ["object", "null"],
            "description": "next_tier, missing (points or minor units, by basis), basis",
        },
        "next_expiry": {"type": ["object", "null"], "description": "at (date-time) and points expiring then"},
        "history": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["earn", "spend", "expire", "reverse", "adjust"]},
                    "points": {"type": "integer", "description": "signed: + in, - out"},
                    "reason": {"type": ["string", "null"]},
                    "occurred_at": {"type": "string", "format": "date-time"},
                },
            },
        },
        "member_link": {"type": "string", "description": "(checkout only) the signed page of the member, 30 days"},
        "member_json": {"type": "string", "description": "(checkout only) the signed JSON for the shop's widget"},
    },
}
REDEMPTION = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "customer": _CUSTOMER,
        "order_id": {"type": "string"},
        "points": {"type": "integer"},
        "discount_minor": {
            "type": "integer",
            "description": "points x value_minor / value_points of the programme, rounded down, minor units",
        },
        "currency": {"type": "string"},
        "status": {"enum": ["reserved", "confirmed", "released"]},
        "balance": {"type": "integer", "description": "the member's balance after this call"},
    },
}
RESERVE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["customer", "order_id"],
    "properties": {
        "customer": _CUSTOMER,
        "order_id": {"type": "string", "minLength": 1, "maxLength": 200},
        "points": {"type": "integer", "minimum": 1, "description": "points to spend (or discount_minor)"},
        "discount_minor": {
            "type": "integer",
            "minimum": 1,
            "description": "the discount wanted in minor units: the fewest points worth it are reserved",
        },
        "order_total_minor": {
            "type": "integer",
            "minimum": 0,
            "description": "the order's total, minor units: points pay at most redeem_max_percent of it",
        },
    },
}


def _op(summary: str, ok: str, schema: dict[str, Any], codes: dict[str, str], post: bool) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": ["loyalty"],
        "security": _SECURITY,
        "parameters": [_IDEMPOTENCY] if post else [],
        "responses": {ok: {"description": "OK", "content": {"application/json": {"schema": schema}}}}
        | {code: {"description": text, **_ERR} for code, text in codes.items()},
    }
    return op


_AUTH = {
    "401": "No or bad API key",
    "404": "not_found (also: a credential other than a merchant operator's key with the loyalty scope); "
    "loyalty_off: the merchant has no programme on; unknown_member",
    "429": "Rate limited",
}
_POST = {"400": "invalid_field, invalid_json, idempotency_key_missing", "409": "idempotency_key_reused"}


def paths() -> dict[str, Any]:
    by_id = {"name": "redemption_id", "in": "path", "required": True, "schema": {"type": "integer", "minimum": 1}}
    customer = {"name": "customer", "in": "path", "required": True, "schema": _CUSTOMER}
    reserve = _op(
        "Reserve points for an order (spent at once, FIFO by expiry; never more than the balance)",
        "201",
        REDEMPTION,
        _AUTH
        | _POST
        | {
            "400": "invalid_field, below_minimum (redeem_min_points), over_order_limit (redeem_max_percent)",
            "409": "insufficient_points, order_has_redemption, idempotency_key_reused",
        },
        True,
    )
    reserve["requestBody"] = {"required": True, "content": {"application/json": {"schema": RESERVE}}}
    enroll = _op("Enrol a customer as a member (no points)", "201", MEMBER, _AUTH | _POST, True)
    enroll["requestBody"] = {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["customer"],
                    "properties": {"customer": _CUSTOMER},
                }
            }
        },
    }
    confirm = _op(
        "Confirm a reservation: the order was placed",
        "200",
        REDEMPTION,
        _AUTH | _POST | {"409": "already_released, idempotency_key_reused"},
        True,
    )
    release = _op(
        "Release a reservation: the points go back",
        "200",
        REDEMPTION,
        _AUTH | _POST | {"409": "already_confirmed, idempotency_key_reused"},
        True,
    )
    confirm["parameters"] = [*confirm["parameters"], by_id]
    release["parameters"] = [*release["parameters"], by_id]
    referral = _op(
        "A member's refer-a-friend link (made once): its code and the tracking URL to share; the friend's first "
        "purchase through it rewards both (not the member itself, nor the member's own browser)",
        "201",
        {
            "type": "object",
            "properties": {"customer": _CUSTOMER, "code": {"type": "string"}, "url": {"type": "string"}},
        },
        _AUTH | _POST | {"404": "referral_off, unknown_member, not_found"},
        True,
    )
    referral["requestBody"] = enroll["requestBody"]
    member = _op("A member: balance, value, tier, progress, expiry, history, signed links", "200", MEMBER, _AUTH, False)
    member["parameters"] = [customer]
    public = {
        "summary": "The member's own view (for the shop's widget), by its signed token",
        "tags": ["loyalty"],
        "security": [],
        "parameters": [{"name": "token", "in": "query", "required": True, "schema": {"type": "string"}}],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": MEMBER}}},
            "404": {"description": "invalid_token (bad signature or expired), loyalty_off, unknown_member", **_ERR},
            "429": {"description": "Rate limited", **_ERR},
        },
    }
    found = {
        "/api/v1/loyalty/members": {"post": enroll},
        "/api/v1/loyalty/members/{customer}": {"get": member},
        "/api/v1/loyalty/redemptions": {"post": reserve},
        "/api/v1/loyalty/referrals": {"post": referral},
        "/api/v1/loyalty/redemptions/{redemption_id}/confirm": {"post": confirm},
        "/api/v1/loyalty/redemptions/{redemption_id}/release": {"post": release},
        "/api/v1/loyalty/member": {"get": public},
    }
    for path, ops in found.items():
        for method, op in ops.items():
            op["operationId"] = re.sub(r"[^A-Za-z0-9]+", "_", f"{method} {path}").strip("_")
    return found


def extend(document: dict[str, Any]) -> dict[str, Any]:
    """Add the loyalty routes and their credential to the portal's document."""
    document["paths"].update(paths())
    document["components"]["securitySchemes"]["loyaltyKey"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "an API key with the loyalty scope, of one of the merchant's operators (clickmint loyalty key)",
    }
    return document
