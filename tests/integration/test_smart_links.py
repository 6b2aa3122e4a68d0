"""Smart links through the tracker, ingest and the operator's API, on real servers with a real MaxMind-format
country database: rules by country, device, OS and language, weighted variants each counted, the fallback, a
variant that is another offer (its conversion credits the partner's link there), and refused rules."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import orjson
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import PER_ADDRESS, click_id_of, drain, postback, tracker_client
from tests.portal.kit import add_user, csrf_headers, login, portal_client

IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36"
US, DE = "198.18.1.10", "198.18.2.10"


@pytest.fixture
def country_db(tmp_path: Path) -> str:
    path = tmp_path / "country.mmdb"
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    for net, iso in (("198.18.1.0/24", "US"), ("198.18.2.0/24", "DE"), ("198.18.3.0/24", "FR")):
        writer.insert_network(IPSet([net]), {"country": {"iso_code": iso}})
    writer.to_db_file(str(path))
    return str(path)


def _url(name: str) -> dict[str, str]:
    return {"name": name, "url": f"https://shop.example.com/{name}?cid={{click_id}}"}


def _visit(ip: str, ua: str = DESKTOP, lang: str = "en-US") -> dict[str, str]:
    return {"x-forwarded-for": ip, "user-agent": ua, "accept-language": lang}


async def test_rules_variants_fallback_and_counts(settings: Settings, db: asyncpg.Connection, country_db: str) -> None:
    prog = await programme(db, fee_plan={"cpa": {"lead": 100}})
    other = await programme(db, merchant_id=prog.merchant_id, fee_plan={"cpa": {"lead": 300}})
    # The partner's own link on the other offer (the factory made another partner's): the offer variant goes there.
    await db.execute("UPDATE links SET partner_id = $1 WHERE id = $2", prog.partner_id, other.link_id)
    rules = {
        "rules": [
            {"name": "US iPhones", "country": ["US"], "os": ["ios"], "variants": [_url("us-app")]},
            {
                "name": "German speakers",
                "language": ["de"],
                "variants": [{"name": "other-offer", "offer_id": other.offer_id}],
            },
            {
                "name": "France A/B",
                "country": ["FR"],
                "variants": [{**_url("fr-a"), "weight": 1}, {**_url("fr-b"), "weight": 1}],
            },
        ],
        "fallback": _url("home"),
    }
    await db.execute("UPDATE links SET smart_rules = $2 WHERE id = $1", prog.link_id, orjson.dumps(rules).decode())
    env = {**PER_ADDRESS, "CLICKMINT_GEOIP_DB": country_db}
    async with tracker_client(settings, env) as (_app, client):

        async def go(headers: dict[str, str]) -> str:
            answer = await client.get(f"/c/{prog.code}?sub1=s", headers=headers)
            assert answer.status_code == 302
            return answer.headers["location"]

        assert urlsplit(await go(_visit(US, IPHONE))).path == "/us-app"
        assert urlsplit(await go(_visit(US))).path == "/home"  # a desktop in the US: no rule, the fallback
        assert urlsplit(await go(_visit(DE, DESKTOP, "de-DE,de;q=0.9"))).netloc == "shop.example.com"
        german = await client.get(f"/c/{prog.code}", headers=_visit(DE, DESKTOP, "de"))
        fr = [urlsplit(await go(_visit(f"198.18.3.{n}"))).path for n in range(40)]  # 40 people, no burst
        assert set(fr) == {"/fr-a", "/fr-b"}  # both variants served (1:1 over 40 clicks)
        # The German click is the other offer's click: its conversion credits the partner's link there.
        assert (
            await postback(
                client,
                await _secret(db, other.offer_id),
                {
                    "offer_id": other.offer_id,
                    "click_id": click_id_of(german),
                    "type": "action",
                    "action": "lead",
                },
            )
        ).status_code == 200
    await drain(settings, 45, db)
    counts = dict(await db.fetch("SELECT variant, clicks FROM rollup_variants WHERE link_id = $1", prog.link_id))
    assert counts["us-app"] == 1 and counts["home"] == 1 and counts["other-offer"] == 2
    assert counts["fr-a"] + counts["fr-b"] == 40 and counts["fr-a"] > 0 and counts["fr-b"] > 0
    conversion = await db.fetchrow("SELECT offer_id, link_id, partner_id FROM conversions")
    assert (conversion["offer_id"], conversion["link_id"], conversion["partner_id"]) == (
        other.offer_id,
        other.link_id,
        prog.partner_id,
    )
    clicks = dict(await db.fetch("SELECT offer_id, sum(clicks) FROM rollups GROUP BY offer_id"))
    assert clicks == {prog.offer_id: 42, other.offer_id: 2}  # each click counted once, under the offer it went to


async def _secret(db: asyncpg.Connection, offer_id: int) -> str:
    return await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", offer_id)


async def test_operator_api_validates_and_reports(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db)
    elsewhere = await programme(db)  # another merchant's offer
    await add_user(db, "ops@shop.example", "operator", merchant_id=prog.merchant_id)
    base = f"/api/v1/admin/links/{prog.link_id}/smart"
    async with portal_client(settings) as client:
        csrf = csrf_headers(await login(client, "ops@shop.example"))
        refused = [
            (
                {"rules": [{"variants": [{"name": "x", "url": "https://evil.example/"}]}]},
                "/smart_rules/rules/0/variants/0/url",
            ),
            (
                {"rules": [{"variants": [{"name": "x", "offer_id": elsewhere.offer_id}]}]},
                "/smart_rules/rules/0/variants/0/offer_id",
            ),
            ({"rules": [{"device": ["phone"], "variants": [_url("x")]}]}, "/smart_rules/rules/0/device/0"),
            ({"rules": [{"hours": {"from": 25, "to": 3}, "variants": [_url("x")]}]}, "/smart_rules/rules/0/hours/from"),
            (
                {"rules": [], "fallback": {"name": "both", "url": "https://shop.example.com/", "offer_id": 1}},
                "/smart_rules/fallback",
            ),
        ]
        for rules, pointer in refused:
            answer = await client.put(base, json={"smart_rules": rules}, headers=csrf)
            assert answer.status_code == 400, answer.text
            assert (answer.json()["error"], answer.json()["pointer"]) == ("invalid_smart_link", pointer)
        assert await db.fetchval("SELECT smart_rules FROM links WHERE id = $1", prog.link_id) is None
        foreign = await client.put(
            f"/api/v1/admin/links/{elsewhere.link_id}/smart", json={"smart_rules": {"rules": []}}, headers=csrf
        )
        assert foreign.status_code == 404
        rules = {"rules": [{"country": ["DE"], "variants": [_url("de")]}], "fallback": _url("home")}
        ok = await client.put(base, json={"smart_rules": rules}, headers=csrf)
        assert ok.status_code == 200 and ok.json()["smart_rules"] == rules
        await db.execute(
            """INSERT INTO rollup_variants (link_id, day, variant, clicks, unique_clicks)
               VALUES ($1, current_date, 'de', 5, 4)""",
            prog.link_id,
        )
        report = (await client.get(base)).json()
        assert report["variants"] == [{"variant": "de", "clicks": 5, "unique_clicks": 4}]
        cleared = await client.delete(base, headers=csrf)
        assert cleared.status_code == 200 and cleared.json()["smart_rules"] is None
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'link.smart'") == 2
