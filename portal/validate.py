"""Request bodies in, checked values out: every refusal is an ApiError naming the field."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import orjson
from starlette.requests import Request

from kernel.money import AmountError, normalize_currency, parse_amount
from portal import terms_schema
from portal.errors import ApiError, invalid

MAX_BODY = 64 * 1024
MAX_UPLOAD = 1024 * 1024 + 64 * 1024
_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SKU = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")

Check = Callable[[str, Any], Any]


def _schema(schema: dict[str, Any]) -> Callable[[Check], Check]:
    """Attach the JSON Schema of what a check accepts, for the OpenAPI document."""

    def mark(check: Check) -> Check:
        check.schema = schema  # type: ignore[attr-defined]
        return check

    return mark


def schema_of(spec: Mapping[str, tuple[Check, bool]]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {name: getattr(check, "schema", {}) for name, (check, _) in spec.items()},
        "required": [name for name, (_, required) in spec.items() if required],
    }


async def body(request: Request, limit: int = MAX_BODY) -> dict[str, Any]:
    """The request's JSON object or form fields; refuses oversized, malformed and non-object bodies."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(413, "too_large", f"the body is limited to {limit} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise ApiError(413, "too_large", f"the body is limited to {limit} bytes")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(
                raw.decode("utf-8", errors="strict"), keep_blank_values=True, max_num_fields=200, errors="strict"
            )
        except (UnicodeDecodeError, ValueError) as exc:
            raise ApiError(400, "invalid_form", "the form is not valid UTF-8 url-encoded data") from exc
        return dict(pairs)
    if not raw:
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", "the body is not valid JSON") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "the body must be a JSON object")
    return data


def fields(data: Mapping[str, Any], spec: Mapping[str, tuple[Check, bool]], *, ignore: tuple[str, ...] = ()) -> dict:
    """Check `data` against {name: (check, required)}; unknown names are refused (a typo is not silently lost)."""
    unknown = sorted(set(data) - set(spec) - set(ignore))
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(unknown)[:200]}")
    out: dict[str, Any] = {}
    for name, (check, required) in spec.items():
        if name not in data or data[name] is None or data[name] == "":
            if required:
                raise invalid(name, "is required")
            continue
        out[name] = check(name, data[name])
    return out


def text(lo: int = 1, hi: int = 200, lines: bool = False) -> Check:
    """A string of lo to hi characters, stripped; without control characters (`lines`: newlines allowed)."""
    allowed = "\t\n" if lines else "\t"

    @_schema({"type": "string", "minLength": lo, "maxLength": hi})
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str):
            raise invalid(name, "must be a string")
        value = value.strip().replace("\r\n", "\n") if lines else value.strip()
        if not lo <= len(value) <= hi:
            raise invalid(name, f"must be {lo} to {hi} characters")
        if any(ord(c) < 32 and c not in allowed for c in value):
            raise invalid(name, "must not hold control characters")
        return value

    return check


def integer(lo: int = 0, hi: int = 2**62) -> Check:
    @_schema({"type": "integer", "minimum": lo, "maximum": hi})
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise invalid(name, "must be an integer")
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,19}", value.strip()):
            value = int(value)
        if not isinstance(value, int):
            raise invalid(name, "must be an integer")
        if not lo <= value <= hi:
            raise invalid(name, f"must be between {lo} and {hi}")
        return value

    return check


def ref(kind: str) -> Check:
    """The id of an object of `kind` (offer, partner, merchant, creative, ...): a positive integer that
    portal/tenancy.py checks against the caller's tenant before any handler sees it."""
    base = integer(1)

    def check(name: str, value: Any) -> int:
        return base(name, value)

    check.schema = {**base.schema, "x-clickmint-ref": kind}  # type: ignore[attr-defined]
    check.ref = kind  # type: ignore[attr-defined]
    return check


def choice(*options: str) -> Check:
    @_schema({"type": "string", "enum": list(options)})
    def check(name: str, value: Any) -> str:
        if value not in options:
            raise invalid(name, f"must be one of {', '.join(options)}")
        return value

    return check


@_schema({"type": "boolean"})
def boolean(name: str, value: Any) -> bool:
    """true or false; from a form, "true"/"false" (or a checkbox's "on")."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "on", "yes", "false", "no"):
        return value.strip().lower() in ("true", "on", "yes")
    raise invalid(name, "must be true or false")


@_schema({"type": "string", "format": "uri", "maxLength": 2000})
def url(name: str, value: Any) -> str:
    value = text(1, 2000)(name, value)
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid(name, "must be an http or https URL with a host")
    return value


@_schema({"type": "string", "pattern": _SLUG.pattern})
def slug(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _SLUG.match(value):
        raise invalid(name, "must be lowercase letters, digits and dashes, starting with a letter or digit")
    return value


@_schema({"type": "string", "pattern": _SKU.pattern})
def sku(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _SKU.match(value):
        raise invalid(name, "must be 1-100 letters, digits, dots, dashes or underscores")
    return value


@_schema({"type": "string", "pattern": "^[A-Z]{3}$"})
def currency(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise invalid(name, "must be an ISO 4217 code such as USD")
    try:
        return normalize_currency(value)
    except AmountError as exc:
        raise invalid(name, f"unknown currency {value}") from exc


@_schema({"type": "string", "pattern": _COLOUR.pattern})
def colour(name: str, value: Any) -> str:
    if not isinstance(value, str) or not _COLOUR.match(value):
        raise invalid(name, "must be a colour like #1a2b3c")
    return value.lower()


@_schema({"type": "array", "items": {"type": "string"}, "maxItems": 50})
def hosts(name: str, value: Any) -> list[str]:
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > 50:
        raise invalid(name, "must be a list of at most 50 host names")
    out = []
    for item in items:
        if not isinstance(item, str) or not re.fullmatch(
            r"\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)*", item.strip()
        ):
            raise invalid(name, f"{str(item)[:60]!r} is not a host name")
        out.append(item.strip())
    return [h for h in out if h]


@_schema({"type": "object"})
def json_object(name: str, value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError as exc:
            raise invalid(name, "must be a JSON object") from exc
    if not isinstance(value, dict) or len(orjson.dumps(value)) > 16_384:
        raise invalid(name, "must be a JSON object of at most 16 KiB")
    return value


@_schema({"$ref": "#/components/schemas/FeePlan"})
def fee_plan(name: str, value: Any) -> dict[str, Any]:
    """An offer's fee plan, checked against schemas/offers/fee_plan.schema.json (invalid_fee_plan)."""
    return terms_schema.check("fee_plan", name, json_object(name, value))


@_schema({"$ref": "#/components/schemas/PartnerPlan"})
def partner_plan(name: str, value: Any) -> dict[str, Any]:
    """A partner's override of an offer's fee plan (the fee plan's keys, each may be null)."""
    return terms_schema.check("partner_plan", name, json_object(name, value))


@_schema({"$ref": "#/components/schemas/Caps"})
def caps(name: str, value: Any) -> dict[str, Any]:
    """An offer's caps, checked against schemas/offers/caps.schema.json (invalid_caps)."""
    return terms_schema.check("caps", name, json_object(name, value))


@_schema({"type": "string", "pattern": "^[0-9]{1,10}(\\.[0-9]{1,10})?$"})
def decimal_rate(name: str, value: Any) -> Decimal:
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,10}(\.[0-9]{1,10})?", value.strip()):
        raise invalid(name, "must be a decimal string like 1.0825 (no exponent, at most 10 decimals)")
    try:
        rate = Decimal(value.strip())
    except InvalidOperation as exc:
        raise invalid(name, "must be a decimal string") from exc
    if rate <= 0:
        raise invalid(name, "must be positive")
    return rate


def money(name: str, value: Any, code: str) -> int:
    """A decimal string in the currency's major unit ("12.50") as integer minor units."""
    if not isinstance(value, str):
        raise invalid(name, 'must be a decimal string such as "12.50"')
    try:
        return parse_amount(value.strip(), code)
    except AmountError as exc:
        raise invalid(name, exc.detail) from exc


@_schema({"type": "string", "format": "date"})
def date(name: str, value: Any) -> dt.date:
    """A UTC day, YYYY-MM-DD."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value.strip()):
        raise invalid(name, "must be a date like 2026-11-30")
    try:
        return dt.date.fromisoformat(value.strip())
    except ValueError as exc:
        raise invalid(name, "must be a date like 2026-11-30") from exc


@_schema({"type": "string", "format": "date-time"})
def timestamp(name: str, value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise invalid(name, "must be an ISO 8601 time with a zone, e.g. 2026-12-01T00:00:00Z")
    try:
        moment = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise invalid(name, "must be an ISO 8601 time with a zone") from exc
    if moment.tzinfo is None:
        if len(value.strip()) <= 16:  # a browser's datetime-local field: read as UTC
            return moment.replace(tzinfo=dt.UTC)
        raise invalid(name, "must carry a time zone")
    return moment


@_schema({"type": "string", "pattern": "^[0-9]{1,15}(\\.[0-9]{1,4})?$"})
def decimal_text(name: str, value: Any) -> str:
    """A money amount as written ("12.50"); turned into minor units once its currency is known (money())."""
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{1,15}(\.[0-9]{1,4})?", value.strip()):
        raise invalid(name, 'must be a decimal string such as "12.50"')
    return value.strip()
