"""Fee plans and caps: one JSON Schema (schemas/offers/) checks every write, by the API, the command line and the
pages; a refusal is a 400 invalid_fee_plan / invalid_caps naming the field by its JSON pointer, and writes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from portal import terms_schema
from schemas import OFFERS_DIR
from tests.helpers import cli_env, run_cli
from tests.portal.kit import csrf_headers, login, portal_client, world

OFFER = {"name": "Plan test", "destination_url": "https://shop.example/?c={click_id}"}

# (fee plan or caps, error code, pointer)
BAD: list[tuple[dict[str, Any], str, str]] = [
    ({"fee_plan": {"cps_precent": "8"}}, "invalid_fee_plan", "/fee_plan/cps_precent"),  # a typo is never saved
    ({"fee_plan": {"bogus": 1}}, "invalid_fee_plan", "/fee_plan/bogus"),
    ({"fee_plan": {"markup": "yes"}}, "invalid_fee_plan", "/fee_plan/markup"),
    ({"fee_plan": {"markup": 1}}, "invalid_fee_plan", "/fee_plan/markup"),
    ({"fee_plan": {"tiers": [1]}}, "invalid_fee_plan", "/fee_plan/tiers/0"),
    ({"fee_plan": {"tiers": {"percent": "7"}}}, "invalid_fee_plan", "/fee_plan/tiers"),
    ({"fee_plan": {"tiers": [{"percent": "7"}]}}, "invalid_fee_plan", "/fee_plan/tiers/0"),
    (
        {"fee_plan": {"tiers": [{"percent": "7", "min_sales": 5, "min_orders": 1}]}},
        "invalid_fee_plan",
        "/fee_plan/tiers/0/min_orders",
    ),
    ({"fee_plan": {"tiers": [{"percent": "170", "min_sales": 5}]}}, "invalid_fee_plan", "/fee_plan/tiers/0/percent"),
    (
        {"fee_plan": {"tiers": [{"percent": "7", "min_sales": 10}, {"percent": "9", "min_sales": 10}]}},
        "invalid_fee_plan",
        "/fee_plan/tiers",
    ),
    ({"fee_plan": {"cps_percent": "101"}}, "invalid_fee_plan", "/fee_plan/cps_percent"),
    ({"fee_plan": {"cps_percent": 8.5}}, "invalid_fee_plan", "/fee_plan/cps_percent"),
    ({"fee_plan": {"cps_percent": "-1"}}, "invalid_fee_plan", "/fee_plan/cps_percent"),
    ({"fee_plan": {"cps_percent": "1e1"}}, "invalid_fee_plan", "/fee_plan/cps_percent"),
    ({"fee_plan": {"cpa": "lots"}}, "invalid_fee_plan", "/fee_plan/cpa"),
    ({"fee_plan": {"cpa": {"Sign Up": 5}}}, "invalid_fee_plan", "/fee_plan/cpa/Sign Up"),
    ({"fee_plan": {"cpa": {"signup": -1}}}, "invalid_fee_plan", "/fee_plan/cpa/signup"),
    ({"fee_plan": {"cpa": {"signup": 2.5}}}, "invalid_fee_plan", "/fee_plan/cpa/signup"),
    ({"fee_plan": {"cpc": "20"}}, "invalid_fee_plan", "/fee_plan/cpc"),
    ({"fee_plan": {"cpm": True}}, "invalid_fee_plan", "/fee_plan/cpm"),
    ({"fee_plan": {"cpv": -1}}, "invalid_fee_plan", "/fee_plan/cpv"),
    ({"fee_plan": {"cpv": 10**13}}, "invalid_fee_plan", "/fee_plan/cpv"),
    ({"caps": {"clicks": {"weekly": 5}}}, "invalid_caps", "/caps/clicks/weekly"),
    ({"caps": {"clicks": {"daily": -1}}}, "invalid_caps", "/caps/clicks/daily"),
    ({"caps": {"bogus": {}}}, "invalid_caps", "/caps/bogus"),
    ({"caps": {"per_partner": {"payout": {"daily": "5"}}}}, "invalid_caps", "/caps/per_partner/payout/daily"),
    ({"caps": {"per_partner": {"per_partner": {}}}}, "invalid_caps", "/caps/per_partner/per_partner"),
]


def _examples(name: str) -> list[dict[str, Any]]:
    return json.loads((OFFERS_DIR / f"{name}.schema.json").read_text())["examples"]


@pytest.mark.parametrize(("change", "code", "pointer"), BAD, ids=[p for _, _, p in BAD])
async def test_a_bad_fee_plan_or_cap_is_refused_naming_the_field(db, settings, change, code, pointer):
    w = await world(db)
    offers = await db.fetchval("SELECT count(*) FROM offers")
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        made = await client.post("/api/v1/admin/offers", json={**OFFER, **change}, headers=csrf_headers(csrf))
        assert made.status_code == 400, made.text
        assert (made.json()["error"], made.json()["pointer"]) == (code, pointer)
        assert made.json()["detail"].startswith(pointer + ": ")
        changed = await client.patch(
            f"/api/v1/admin/offers/{w.ids['public_offer']}", json=change, headers=csrf_headers(csrf)
        )
        assert (changed.status_code, changed.json().get("pointer")) == (400, pointer)
    assert await db.fetchval("SELECT count(*) FROM offers") == offers
    assert (
        await db.fetchval("SELECT fee_plan::text || caps::text FROM offers WHERE id = $1", w.ids["public_offer"])
        == "{}{}"
    )
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


@pytest.mark.parametrize("name", ["fee_plan", "caps"])
def test_every_example_in_the_schema_is_valid(name: str) -> None:
    examples = _examples(name)
    assert examples and all(terms_schema.problems(name, example) == [] for example in examples)


def test_the_examples_show_every_model() -> None:
    shown = {key for example in _examples("fee_plan") for key in example}
    assert shown == set(terms_schema.schema("fee_plan")["properties"])


async def test_every_example_plan_is_saved_and_read_back(db, settings):
    await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        for i, plan in enumerate(_examples("fee_plan")):
            caps = _examples("caps")[i % 2]
            body = {**OFFER, "name": f"Plan {i}", "fee_plan": plan, "caps": caps}
            made = await client.post("/api/v1/admin/offers", json=body, headers=csrf_headers(csrf))
            assert made.status_code == 201, made.text
            assert (made.json()["fee_plan"], made.json()["caps"]) == (plan, caps)


async def test_a_partner_plan_is_checked_too(db, settings):
    w = await world(db)
    url = f"/api/v1/admin/offers/{w.ids['public_offer']}/partner-plan"
    async with portal_client(settings) as client:
        h = csrf_headers(await login(client, "ops@shop-m.example"))
        typo = await client.put(url, json={"partner_id": w.a_partner, "fee_plan": {"cps_precent": "12"}}, headers=h)
        assert (typo.status_code, typo.json()["error"], typo.json()["pointer"]) == (
            400,
            "invalid_fee_plan",
            "/fee_plan/cps_precent",
        )
        deep = await client.put(
            url, json={"partner_id": w.a_partner, "fee_plan": {"tiers": [{"percent": "x", "min_sales": 1}]}}, headers=h
        )
        assert (deep.status_code, deep.json()["pointer"]) == (400, "/fee_plan/tiers/0/percent")
        assert await db.fetchval("SELECT count(*) FROM offer_partner_plans") == 0
        ok = await client.put(
            url, json={"partner_id": w.a_partner, "fee_plan": {"cps_percent": None, "cpa": {"signup": 400}}}, headers=h
        )
        assert ok.status_code == 200, ok.text  # null: this partner is not paid by cps
    assert await db.fetchval("SELECT count(*) FROM offer_partner_plans") == 1


async def test_the_command_line_and_the_pages_refuse_it_too(db, settings):
    await world(db)
    code, _out, err = await run_cli(
        cli_env(settings),
        "admin",
        "offer",
        "add",
        "--merchant",
        "shop-m",
        "--name",
        "Typo",
        "--destination",
        "https://shop.example/",
        "--plan",
        '{"cps_precent": "8"}',
    )
    assert code == 1 and "invalid_fee_plan: /fee_plan/cps_precent: unknown key" in err
    async with portal_client(settings) as client:
        await login(client, "ops@shop-m.example")
        page = await client.get("/admin/offers")
        csrf = page.text.split('name="csrf_token" value="')[1].split('"')[0]
        form = {"csrf_token": csrf, **OFFER, "fee_plan": '{"tiers": [1]}'}
        refused = await client.post("/admin/offers", data=form)
        assert refused.status_code == 400 and "/fee_plan/tiers/0" in refused.text
    assert await db.fetchval("SELECT count(*) FROM offers WHERE name IN ('Typo', 'Plan test')") == 0


async def test_the_openapi_document_embeds_the_schemas(db, settings):
    async with portal_client(settings) as client:
        doc = (await client.get("/api/v1/openapi.json")).json()
    components = doc["components"]["schemas"]
    for component, name in (("FeePlan", "fee_plan"), ("Caps", "caps")):
        expected = {k: v for k, v in terms_schema.schema(name).items() if k not in ("$schema", "$id")}
        assert components[component] == expected
    assert components["PartnerPlan"]["properties"]["cps_percent"]["anyOf"][1] == {"type": "null"}
    body = doc["paths"]["/api/v1/admin/offers"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["fee_plan"] == {"$ref": "#/components/schemas/FeePlan"}
    assert body["properties"]["caps"] == {"$ref": "#/components/schemas/Caps"}
    assert "pointer" in components["Error"]["properties"]
