"""The fee plan and caps editor's form, both ways (pure): fields people type ("7.5" %, "0.05" per click, caps
per day) into the fee plan and caps JSON the schema checks (minor units), and a stored plan back into fields.
Every refusal names the form field it is about, so the page shows it beside that field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from kernel.money import format_amount
from portal import terms_schema, validate
from portal.errors import ApiError, invalid
from portal.i18n import N_, gettext_

MODELS = {  # in English; translated on display (models())
    "cps": N_("Percent of sale: partners earn a share of each order's amount."),
    "cpa": N_("Per action: a fixed amount for each signup, lead or other named action."),
    "cpc": N_("Per click: a fixed amount for each unique, non-bot click."),
    "cpm": N_("Per 1,000 views: for banners, counted on views that are not bots."),
    "cpv": N_("Per view: a fixed amount for each non-bot view."),
    "markup": N_("Markup: partners set their own retail price and earn the difference to your wholesale price."),
}
METRICS = ("clicks", "conversions", "payout")
PERIODS = ("daily", "lifetime")
SCOPES = ("offer", "partner")
TIERS, ACTIONS = 3, 4  # rows shown beyond the ones a plan has (blank rows are ignored)
_PERCENT = re.compile(r"^\s*([0-9]{1,3}(?:\.[0-9]{1,10})?)\s*%?\s*$")
_ACTION = re.compile(r"^[a-z0-9_.-]{1,255}$")


def models() -> dict[str, str]:
    """Each model's one-line explanation in the page's language."""
    return {key: gettext_(line) for key, line in MODELS.items()}


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return value.strip() if isinstance(value, str) else ""


def percent(name: str, raw: str) -> str:
    """ "7.5", "7.5 %" or "7.50" -> "7.5" (a decimal string, as the schema wants), 0 to 100."""
    match = _PERCENT.match(raw)
    if not match:
        raise invalid(name, gettext_("enter a percentage, e.g. 7.5"))
    try:
        value = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise invalid(name, gettext_("enter a percentage, e.g. 7.5")) from exc
    if value > 100:
        raise invalid(name, gettext_("must be 100 % or less"))
    return match.group(1)


def _whole(name: str, raw: str, lo: int = 0) -> int:
    if not raw.isdigit() or len(raw) > 15 or int(raw) < lo:
        said = (
            gettext_("enter a whole number of at least %(min)s, e.g. 200")
            if lo
            else gettext_("enter a whole number, e.g. 200")
        )
        raise invalid(name, said % {"min": lo} if lo else said)
    return int(raw)


def to_plan(form: Mapping[str, Any], currency: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(fee_plan, caps) from the editor's fields, checked against the schemas."""
    plan: dict[str, Any] = {}
    chosen = {m for m in MODELS if form.get(f"m_{m}")}
    if "cps" in chosen:
        plan["cps_percent"] = percent("cps_percent", _text(form, "cps_percent"))
        tiers: list[dict[str, Any]] = []
        for i in range(1, 21):
            row = {k: _text(form, f"tier_{k}_{i}") for k in ("percent", "min_sales", "min_amount")}
            if not any(row.values()):
                continue
            tier: dict[str, Any] = {"percent": percent(f"tier_percent_{i}", row["percent"])}
            if row["min_sales"]:
                tier["min_sales"] = _whole(f"tier_min_sales_{i}", row["min_sales"], 1)
            if row["min_amount"]:
                tier["min_amount"] = validate.money(f"tier_min_amount_{i}", row["min_amount"], currency)
            if "min_sales" not in tier and "min_amount" not in tier:
                raise invalid(f"tier_min_sales_{i}", gettext_("a tier needs a number of sales or an amount of sales"))
            for key in ("min_sales", "min_amount"):
                before = [t[key] for t in tiers if key in t]
                if key in tier and before and tier[key] <= before[-1]:
                    raise invalid(f"tier_{key}_{i}", gettext_("must be more than the tier before it (tiers rise)"))
            tiers.append(tier)
        if tiers:
            plan["tiers"] = tiers
    if "cpa" in chosen:
        actions: dict[str, int] = {}
        for i in range(1, 101):
            action, amount = _text(form, f"cpa_action_{i}"), _text(form, f"cpa_amount_{i}")
            if not action and not amount:
                continue
            if not _ACTION.match(action):
                raise invalid(f"cpa_action_{i}", gettext_("an action name is a-z, 0-9, '_', '-' or '.', e.g. signup"))
            actions[action] = validate.money(f"cpa_amount_{i}", amount, currency)
        if not actions:
            raise invalid("cpa_action_1", gettext_("name at least one action and what it pays, e.g. signup and 2.50"))
        plan["cpa"] = actions
    for model in ("cpc", "cpm", "cpv"):
        if model in chosen:
            plan[model] = validate.money(model, _text(form, model), currency)
    if "markup" in chosen:
        plan["markup"] = True
    caps: dict[str, Any] = {}
    for scope in SCOPES:
        for metric in METRICS:
            for period in PERIODS:
                name = f"cap_{scope}_{metric}_{period}"
                raw = _text(form, name)
                if not raw:
                    continue
                value = validate.money(name, raw, currency) if metric == "payout" else _whole(name, raw)
                table = caps.setdefault("per_partner", {}) if scope == "partner" else caps
                table.setdefault(metric, {})[period] = value
    _schema("fee_plan", plan, plan_field)
    _schema("caps", caps, cap_field)
    return plan, caps


def _schema(name: str, value: dict[str, Any], field_of: Any) -> None:
    try:
        terms_schema.check(name, name, value)
    except ApiError as exc:
        pointer = (exc.pointer or "").removeprefix(f"/{name}")
        raise invalid(field_of(pointer), exc.detail.split(": ", 1)[-1]) from exc


def plan_field(pointer: str) -> str:
    parts = pointer.strip("/").split("/")
    if parts[0] == "tiers" and len(parts) > 2 and parts[1].isdigit():
        return f"tier_{parts[2]}_{int(parts[1]) + 1}"
    return {"cpa": "cpa_action_1", "tiers": "tier_percent_1"}.get(parts[0], parts[0] or "cps_percent")


def cap_field(pointer: str) -> str:
    parts = pointer.strip("/").split("/")
    scope = "partner" if parts and parts[0] == "per_partner" else "offer"
    rest = parts[1:] if scope == "partner" else parts
    metric = rest[0] if rest and rest[0] in METRICS else "clicks"
    period = rest[1] if len(rest) > 1 and rest[1] in PERIODS else "daily"
    return f"cap_{scope}_{metric}_{period}"


def to_form(plan: Mapping[str, Any], caps: Mapping[str, Any], currency: str) -> dict[str, str]:
    """The editor's fields for a stored plan and caps (amounts as people write them)."""
    out: dict[str, str] = {}
    if plan.get("cps_percent") is not None:
        out["m_cps"], out["cps_percent"] = "true", str(plan["cps_percent"])
    for i, tier in enumerate(plan.get("tiers") or [], start=1):
        out[f"tier_percent_{i}"] = str(tier["percent"])
        if "min_sales" in tier:
            out[f"tier_min_sales_{i}"] = str(tier["min_sales"])
        if "min_amount" in tier:
            out[f"tier_min_amount_{i}"] = format_amount(tier["min_amount"], currency)
    for i, (action, amount) in enumerate(sorted((plan.get("cpa") or {}).items()), start=1):
        out["m_cpa"], out[f"cpa_action_{i}"], out[f"cpa_amount_{i}"] = "true", action, format_amount(amount, currency)
    for model in ("cpc", "cpm", "cpv"):
        if plan.get(model) is not None:
            out[f"m_{model}"], out[model] = "true", format_amount(plan[model], currency)
    if plan.get("markup"):
        out["m_markup"] = "true"
    for scope in SCOPES:
        table = (caps.get("per_partner") or {}) if scope == "partner" else caps
        for metric in METRICS:
            for period, value in (table.get(metric) or {}).items():
                shown = format_amount(value, currency) if metric == "payout" else str(value)
                out[f"cap_{scope}_{metric}_{period}"] = shown
    return out


def rows(form: Mapping[str, Any], prefix: str, extra: int) -> int:
    """How many rows of a repeated group to show: the filled ones and `extra` blank ones."""
    filled = [int(k.rsplit("_", 1)[1]) for k, v in form.items() if k.startswith(prefix) and v and k[-1].isdigit()]
    return max(filled, default=0) + extra
