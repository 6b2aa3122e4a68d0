"""Fee plans and caps checked against their JSON Schemas (schemas/offers/*.schema.json), the one truth for
every write: the API, the command line and the pages. A refusal names the field by its JSON pointer."""

from __future__ import annotations

import copy
import functools
import json
from typing import Any

import jsonschema

from portal.errors import ApiError
from schemas import OFFERS_DIR

CODES = {
    "fee_plan": "invalid_fee_plan",
    "partner_plan": "invalid_fee_plan",
    "caps": "invalid_caps",
    "fraud": "invalid_fraud_rules",
    "smart_link": "invalid_smart_link",
}


@functools.cache
def schema(name: str) -> dict[str, Any]:
    """The schema `name`: fee_plan, caps, or partner_plan (the fee plan with null allowed for each key)."""
    if name == "partner_plan":
        plan = copy.deepcopy(schema("fee_plan"))
        plan["title"] = "PartnerPlan"
        plan["description"] = (
            "A partner's override of its offer's fee plan: the keys of FeePlan, each replacing the offer's value "
            "for this partner; null removes that model for the partner."
        )
        plan["$id"] = plan["$id"].replace("fee_plan", "partner_plan")
        plan["properties"] = {k: {"anyOf": [v, {"type": "null"}]} for k, v in plan["properties"].items()}
        plan["examples"] = [{"cps_percent": "12"}, {"cpa": {"signup": 400}, "cps_percent": None}]
        return plan
    found: dict[str, Any] = json.loads((OFFERS_DIR / f"{name}.schema.json").read_text())
    return found


@functools.cache
def _validator(name: str) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema(name))
    return jsonschema.Draft202012Validator(schema(name))


def problems(name: str, instance: Any) -> list[tuple[str, str]]:
    """(JSON pointer, words) for each way `instance` breaks the schema `name`, in a stable order."""
    found: list[tuple[str, str]] = []
    for error in _validator(name).iter_errors(instance):
        _explain(error, found)
    return sorted(set(found))


def _explain(error: jsonschema.ValidationError, found: list[tuple[str, str]]) -> None:
    path = [str(part) for part in error.absolute_path]
    if error.validator == "anyOf" and {"type": "null"} in error.validator_value:
        for inner in error.context or ():  # a partner plan's "the plan's value, or null": explain the value
            if inner.relative_schema_path and inner.relative_schema_path[0] == 0:
                _explain(inner, found)
        return
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - allowed):
            found.append((_pointer([*path, key]), f"unknown key; allowed: {', '.join(sorted(allowed))}"))
        return
    if "propertyNames" in error.schema_path:  # the key itself is wrong: point at it
        found.append((_pointer([*path, str(error.instance)]), "is not an allowed name (a-z, 0-9, '_', '-', '.')"))
        return
    found.append((_pointer(path), _words(error)))


def check(name: str, field: str, instance: Any) -> Any:
    """Return `instance` if it conforms to the schema `name`, else raise a 400 naming the field
    (`pointer`: the JSON pointer of the offending value within the request body, under `field`)."""
    found = problems(name, instance)
    if found:
        pointer, words = found[0]
        raise refusal(name, f"/{field}{pointer}", words)
    return instance


def refusal(name: str, pointer: str, words: str) -> ApiError:
    return ApiError(400, CODES[name], f"{pointer}: {words}", pointer=pointer)


def _pointer(path: list[str]) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def _words(error: jsonschema.ValidationError) -> str:
    kind = error.validator
    if kind == "type":
        return f"must be of type {error.validator_value}, not {json.dumps(error.instance)[:60]}"
    if kind in ("minimum", "maximum"):
        return f"must be {'at least' if kind == 'minimum' else 'at most'} {error.validator_value}"
    if kind == "pattern" and "forbidden_referrers" in error.absolute_schema_path:
        return f"{json.dumps(error.instance)[:60]} is not a host name such as coupons.example"
    if kind == "pattern":
        return f'{json.dumps(error.instance)[:60]} is not a decimal string from 0 to 100 such as "7.5"'
    if kind == "anyOf":  # the one anyOf of the fee plan: a tier's thresholds
        return "a tier needs min_sales or min_amount"
    return error.message[:200]
