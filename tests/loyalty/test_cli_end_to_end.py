"""End to end: a signed postback with a customer id through the tracker and ingest earns points; the
`clickmint loyalty` commands enable, read, adjust (audited), expire and report the liability."""

from __future__ import annotations

import datetime as dt

import asyncpg
import orjson

from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import cli_env, click_id_of, drain, postback, run_cli, tracker_client
from tests.portal.kit import add_user


async def test_postback_to_points_and_the_commands(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await db.execute("UPDATE offers SET hold_days = 0")
    slug = await db.fetchval("SELECT slug FROM merchants WHERE id = $1", prog.merchant_id)
    env = cli_env(settings)
    code, out, err = await run_cli(
        env, "loyalty", "enable", "--merchant", slug, "--expiry-days", "30", "--rules",
        '{"points_per_unit": 2, "unit_minor": 100, "categories": {"tea": {"points_per_unit": 10, "unit_minor": 100}}}',
    )  # fmt: skip
    assert code == 0, err
    assert "loyalty on" in out and "expiry 30 days" in out
    code, _, err = await run_cli(env, "loyalty", "enable", "--merchant", slug, "--rules", '{"points_per_unit": -1}')
    assert code == 1 and "invalid_field" in err
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        cid = click_id_of(await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"}))
        answer = await postback(
            client,
            secret,
            {
                "offer_id": prog.offer_id,
                "click_id": cid,
                "order_id": "A1",
                "amount": "50.00",
                "customer_id": "cust-7",
                "items": [{"sku": "T-1", "qty": 1, "price": "10.00", "category": "tea"}],
            },
        )
        assert answer.status_code == 200, answer.text
        # A pixel with the same customer id proves nothing: it earns nothing.
        await client.get(f"/a/{prog.offer_id}?order_id=A2&amount=900&customer_id=cust-7")
    await drain(settings, 3, db)
    lots = await db.fetch("SELECT rule, points FROM loyalty_lots ORDER BY rule")
    assert [tuple(r) for r in lots] == [("base", 80), ("category:tea", 100)]  # 40.00 x 2, 10.00 x 10
    assert {r["status"] for r in await db.fetch("SELECT status FROM loyalty_lots")} == {"pending"}
    code, out, err = await run_cli(env, "loyalty", "expire")
    assert code == 0, err
    assert "lots activated: 2" in out
    code, out, err = await run_cli(env, "loyalty", "balance", "--merchant", slug, "cust-7")
    assert code == 0, err
    assert orjson.loads(out)["balance"] == 180
    code, out, err = await run_cli(
        env, "loyalty", "adjust", "--merchant", slug, "cust-7", "-30", "--reason", "goodwill"
    )
    assert code == 0 and "balance 150" in out, err
    code, _, err = await run_cli(env, "loyalty", "adjust", "--merchant", slug, "cust-7", "-300", "--reason", "x")
    assert code == 1 and "insufficient_points" in err
    audit = await db.fetchrow("SELECT action, object_id, detail FROM audit_log WHERE action = 'loyalty.adjust'")
    assert audit["object_id"] == "cust-7" and orjson.loads(audit["detail"])["reason"] == "goodwill"
    code, out, _ = await run_cli(env, "loyalty", "liability", "--merchant", slug)
    month = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%Y-%m")
    assert f"{month}" in out and "150" in out
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(days=31)).isoformat()
    code, out, _ = await run_cli(env, "loyalty", "expire", "--now", later)
    assert "points expired: 150" in out
    operator = await add_user(db, "ops@shop.example", "operator", merchant_id=prog.merchant_id)
    code, out, _ = await run_cli(env, "loyalty", "key", "--merchant", slug, "--email", "ops@shop.example")
    assert code == 0 and out.startswith("checkout key (shown once): cm_")
    assert await db.fetchval("SELECT scopes FROM api_keys WHERE user_id = $1", operator) == ["loyalty"]
