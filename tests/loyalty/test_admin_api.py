"""Operators: programme, member search, audited adjustments, liability, each within their merchant; partners:
counts of the customers they brought who are members, by tier, never a customer id."""

from __future__ import annotations

import datetime as dt

import asyncpg
import orjson

from billing import loyalty_ledger as ledger
from billing.derive import Deriver
from kernel.settings import Settings
from tests.loyalty_kit import ingest, sale, shop
from tests.portal.kit import add_user, api_key, portal_client


async def test_operator_programme_members_adjust_liability(db: asyncpg.Connection, settings: Settings):
    prog = await shop(db, hold_days=0, expiry_days=30)
    other = await shop(db)
    operator = await add_user(db, "ops@shop.example", "operator", merchant_id=prog.merchant_id)
    key = {"authorization": f"Bearer {await api_key(db, operator)}"}
    await ingest(db, Deriver(), sale(prog, "alice@x", "o1", 12_000), sale(other, "zed@other", "o2", 5_000))
    await ledger.activate_due(db, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    async with portal_client(settings) as client:
        got = await client.get("/api/v1/admin/loyalty/programme", headers=key)
        assert got.json()["enabled"] is True and got.json()["value_points"] == 100
        bad = await client.put("/api/v1/admin/loyalty/programme", json={"rules": {"points_per_unit": -1}}, headers=key)
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_field")
        bad = await client.put("/api/v1/admin/loyalty/programme", json={"refund_policy": "maybe"}, headers=key)
        assert bad.status_code == 400
        ok = await client.put(
            "/api/v1/admin/loyalty/programme", json={"refund_policy": "negative", "expiry_days": 60}, headers=key
        )
        assert (ok.status_code, ok.json()["refund_policy"], ok.json()["expiry_days"]) == (200, "negative", 60)
        # Another merchant's programme is out of reach.
        theirs = await client.put(
            "/api/v1/admin/loyalty/programme", json={"merchant_id": other.merchant_id, "enabled": False}, headers=key
        )
        assert theirs.status_code == 404
        found = await client.get("/api/v1/admin/loyalty/members?q=ALICE", headers=key)
        assert [m["customer"] for m in found.json()["members"]] == ["alice@x"]
        assert (await client.get("/api/v1/admin/loyalty/members?q=zed", headers=key)).json()["members"] == []
        adjusted = await client.post(
            "/api/v1/admin/loyalty/adjustments",
            json={"customer": "alice@x", "points": 30, "reason": "late delivery"},
            headers=key,
        )
        assert (adjusted.status_code, adjusted.json()["balance"]) == (201, 150)
        refused = await client.post(
            "/api/v1/admin/loyalty/adjustments",
            json={"customer": "alice@x", "points": -1000, "reason": "x"},
            headers=key,
        )
        assert (refused.status_code, refused.json()["error"]) == (409, "insufficient_points")
        no_reason = await client.post(
            "/api/v1/admin/loyalty/adjustments", json={"customer": "alice@x", "points": 5}, headers=key
        )
        assert no_reason.status_code == 400
        stranger = await client.post(
            "/api/v1/admin/loyalty/adjustments", json={"customer": "zed@other", "points": 5, "reason": "x"}, headers=key
        )
        assert stranger.status_code == 201  # enrols zed@other in this merchant: the other merchant's is another member
        report = (await client.get("/api/v1/admin/loyalty/liability", headers=key)).json()
        assert report["total_points"] == 155 and report["total_value_minor"] == 155 and report["currency"] == "USD"
        assert sum(r["points"] for r in report["by_month_of_expiry"]) == 155
    audit = await db.fetch("SELECT action, actor_email, detail FROM audit_log ORDER BY id")
    assert [a["action"] for a in audit] == ["loyalty.programme", "loyalty.adjust", "loyalty.adjust"]
    assert orjson.loads(audit[1]["detail"])["reason"] == "late delivery"
    zed = await db.fetch("SELECT merchant_id, balance FROM loyalty_members WHERE customer_ref = 'zed@other' ORDER BY 1")
    assert [tuple(r) for r in zed] == [(prog.merchant_id, 5), (other.merchant_id, 50)]


async def test_partner_sees_counts_by_tier_and_no_customer(db: asyncpg.Connection, settings: Settings):
    tiers = {"levels": [{"name": "Gold", "min": 100, "multiplier": "1"}]}
    prog = await shop(db, hold_days=0, tiers=tiers)
    partner_user = await add_user(db, "p@partner.example", "partner", partner_id=prog.partner_id)
    key = {"authorization": f"Bearer {await api_key(db, partner_user)}"}
    await ingest(
        db,
        Deriver(),
        sale(prog, "secret-gold", "o1", 20_000),
        sale(prog, "secret-plain", "o2", 1_000),
        sale(prog, "secret-none", "o3", 50, currency="EUR"),  # a customer, not a member
    )
    now = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    await ledger.activate_due(db, now)
    await ledger.recalculate_tiers(db, now)
    async with portal_client(settings) as client:
        answer = await client.get("/api/v1/partner/loyalty", headers=key)
    assert answer.status_code == 200
    assert "secret" not in answer.text
    [merchant] = answer.json()["merchants"]
    assert (merchant["customers"], merchant["members"], merchant["by_tier"]) == (3, 2, {"Gold": 1, "none": 1})
