"""The OpenAPI 3.1 document, drawn from the endpoint registry so it cannot miss a route."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from kernel.payout_details import REASONS
from portal import terms_schema, validate
from portal.api import Endpoint

_ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code, e.g. invalid_field, invalid_fee_plan"},
        "detail": {"type": "string"},
        "pointer": {
            "type": "string",
            "description": "invalid_fee_plan and invalid_caps: the JSON pointer of the offending value in the "
            "request body, e.g. /fee_plan/tiers/0/percent",
        },
        "reason": {
            "type": "string",
            "enum": sorted({code for _, code in REASONS} | {"other"}),
            "description": "invalid_field of an IBAN, a BIC or a VAT number: why its check failed, e.g. checksum "
            "(the check digits do not match: a typo), length, format, country_code, bank_code, national_checksum; "
            "other for a reason not listed",
        },
    },
}


def _embedded(name: str) -> dict[str, Any]:
    """A schema of schemas/offers as an OpenAPI component (the document names it, not its file)."""
    return {k: v for k, v in terms_schema.schema(name).items() if k not in ("$schema", "$id")}


_ERRORS = {
    "400": "Invalid input",
    "401": "No or bad credential",
    "403": "Scope, CSRF or another site's origin (cross_origin) refused",
    "404": "Not found (also another partner's object)",
    "409": "Conflict",
    "413": "Body too large",
    "429": "Rate limited (see Retry-After)",
    "503": "redis_unavailable: Redis, which keeps the rate limits and cap counters, is not answering; retry later",
}
# Public writes (sign-in, sign-out, password reset, invitations) take only JSON: a form from another site cannot.
_NOT_JSON = {"415": "Not JSON (unsupported_media_type)"}


def _reasons() -> dict[str, Any]:
    """Why a conversion was refused or rejected, and why a refund did not count: every code with its meaning."""
    from kernel.sources import KINDS
    from portal.api_operator import REASONS

    return {
        "type": "string",
        "description": "Refusal codes of conversions (the tracker answers them to postbacks as "
        '{"error": code} with 4xx, to TUNE as err_msg=code, to pixels in X-Clickmint-Refusal) and the reasons '
        "billing rejects with; GET /api/v1/admin/conversions shows them per conversion. Kinds: "
        + ", ".join(KINDS)
        + ". "
        + "; ".join(f"{code}: {words}" for code, words in sorted(REASONS.items())),
        "enum": sorted(REASONS),
        "x-clickmint-meanings": dict(sorted(REASONS.items())),
    }


_ID = {"type": "integer", "minimum": 1}
# Path parameters that are not numeric ids.
_PATH_SCHEMAS = {"batch_id": {"type": "string", "pattern": "^PB-[0-9]{4}-[0-9]{2}-[0-9]{6}$"}}


def document(endpoints: Iterable[Endpoint], version: str) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        operation: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": re.sub(r"[^A-Za-z0-9]+", "_", f"{ep.method.lower()} {ep.path}").strip("_"),
            "tags": [ep.tag or ep.role],
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": _PATH_SCHEMAS.get(name, _ID)}
                for name in re.findall(r"{(\w+)}", ep.path)
            ]
            + [{"name": name, "in": "query", "required": False, "schema": schema} for name, schema in ep.query.items()],
            "responses": {
                str(ep.status): {
                    "description": "OK",
                    "content": {
                        ep.produces: {
                            "schema": {"type": "object"}
                            if "json" in ep.produces
                            else {"type": "string", "format": "binary"}
                        }
                    },
                },
                **{
                    code: {
                        "description": text,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
                    }
                    for code, text in (
                        _ERRORS | _NOT_JSON if ep.role == "public" and ep.method != "GET" else _ERRORS
                    ).items()
                },
            },
        }
        if ep.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": validate.schema_of(ep.body)}},
            }
        if ep.role == "public":
            operation["security"] = []
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Clickmint portal API",
            "version": version,
            "description": "Partner-scoped routes take the partner from the credential; another partner's "
            'object answers 404. Errors are {"error": code, "detail": words}.',
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": {
                "Error": _ERROR,
                "FeePlan": _embedded("fee_plan"),
                "PartnerPlan": _embedded("partner_plan"),
                "Caps": _embedded("caps"),
                "FraudRules": _embedded("fraud"),
                "SmartLinkRules": _embedded("smart_link"),
                "ConversionReason": _reasons(),
            },
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "cm_<prefix>_<secret>"},
                "session": {"type": "apiKey", "in": "cookie", "name": "cm_session"},
            },
        },
        "security": [{"apiKey": []}, {"session": []}],
    }
