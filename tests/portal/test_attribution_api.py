"""The API of coupons, attribution settings and held conversions: who may name what, every refusal writes
nothing, every decision is audited, a partner sees its codes, uses and holds and nobody else's."""

from __future__ import annotations

import uuid

import asyncpg
import pytest

from kernel.settings import Settings
from tests.portal.kit import World, csrf_headers, login, portal_client, world


async def _count(db: asyncpg.Connection, table: str) -> int:
    return await db.fetchval(f"SELECT count(*) FROM {table}")


async def _held(db: asyncpg.Connection, w: World, partner: int, offer: int, order: str, reason: str) -> str:
    event_id = uuid.uuid4()
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                    currency, status, hold_until, held_reason, held_until, coupon)
           VALUES ($1, now(), 'purchase', $2, $3, $4, $5, 5000, 'USD', 'held', now(), $6, now() + interval '30 days',
                   'ALICE10')""",
        event_id,
        w.merchant_id,
        offer,
        partner,
        order,
        reason,
    )
    return str(event_id)


async def test_operator_assigns_codes_and_decides_requests(db: asyncpg.Connection, settings: Settings) -> None:
    w = await world(db)
    offer = w.ids["public_offer"]
    async with portal_client(settings) as client:
        csrf = csrf_headers(await login(client, "ops@shop-m.example"))
        made = await client.post(
            "/api/v1/admin/coupons",
            json={
                "offer_id": offer,
                "partner_id": w.a_partner,
                "code": "alice10",
                "valid_until": "2030-01-01T00:00:00Z",
            },
            headers=csrf,
        )
        assert made.status_code == 201, made.text
        assert (made.json()["code"], made.json()["status"]) == ("ALICE10", "active")
        refusals = [
            ({"offer_id": offer, "partner_id": w.a_partner, "code": "ALICE10"}, 409, "coupon_taken"),
            ({"offer_id": offer, "partner_id": w.a_partner, "code": "bad code"}, 400, "invalid_field"),
            ({"offer_id": offer, "partner_id": w.a_partner, "code": "X1", "valid_from": "2030-01-02T00:00:00Z",
              "valid_until": "2030-01-01T00:00:00Z"}, 400, "invalid_field"),
            ({"offer_id": w.ids["b_only_offer"], "partner_id": w.a_partner, "code": "X2"}, 404, "not_found"),
            ({"offer_id": offer, "partner_id": w.a_partner, "code": "X3", "extra": 1}, 400, "unknown_field"),
        ]  # fmt: skip
        before = await _count(db, "coupons")
        for body, status, code in refusals:
            answer = await client.post("/api/v1/admin/coupons", json=body, headers=csrf)
            assert (answer.status_code, answer.json()["error"]) == (status, code), body
        assert await _count(db, "coupons") == before
        # A partner in the merchant's programme only: B is approved at M too, so suspend B first.
        await db.execute(
            "UPDATE partner_programmes SET status = 'suspended' WHERE partner_id = $1 AND merchant_id = $2",
            w.b_partner,
            w.merchant_id,
        )
        suspended = await client.post(
            "/api/v1/admin/coupons", json={"offer_id": offer, "partner_id": w.b_partner, "code": "BOB"}, headers=csrf
        )
        assert (suspended.status_code, suspended.json()["error"]) == (409, "partner_not_approved")
        await db.execute("UPDATE partner_programmes SET status = 'approved' WHERE partner_id = $1", w.b_partner)

    async with portal_client(settings) as client:  # Alice requests a second code
        csrf = csrf_headers(await login(client, "alice@p.example"))
        asked = await client.post(
            "/api/v1/partner/coupons", json={"offer_id": offer, "code": "ALICE-VIP"}, headers=csrf
        )
        assert asked.status_code == 201, asked.text
        assert asked.json()["status"] == "requested" and asked.json()["partner_id"] == w.a_partner
        elsewhere = await client.post(
            "/api/v1/partner/coupons", json={"offer_id": w.ids["b_only_offer"], "code": "NOPE"}, headers=csrf
        )
        assert elsewhere.status_code == 404  # an offer of a programme Alice is not in
        spoofed = await client.post(
            "/api/v1/partner/coupons",
            json={"offer_id": offer, "code": "FORBOB", "partner_id": w.b_partner},
            headers=csrf,
        )
        assert (spoofed.status_code, spoofed.json()["error"]) == (400, "unknown_field")  # a partner names only itself
    requested = asked.json()["id"]

    async with portal_client(settings) as client:  # another merchant's operator cannot decide it
        csrf = csrf_headers(await login(client, "ops@bbb.example"))
        foreign = await client.post(
            f"/api/v1/admin/coupons/{requested}/decision", json={"decision": "approve"}, headers=csrf
        )
        assert foreign.status_code == 404
        assert (await client.get("/api/v1/admin/coupons")).json()["coupons"] == []

    async with portal_client(settings) as client:
        csrf = csrf_headers(await login(client, "ops@shop-m.example"))
        approved = await client.post(
            f"/api/v1/admin/coupons/{requested}/decision", json={"decision": "approve", "note": "ok"}, headers=csrf
        )
        assert approved.status_code == 200 and approved.json()["status"] == "active"
        again = await client.post(
            f"/api/v1/admin/coupons/{requested}/decision", json={"decision": "reject"}, headers=csrf
        )
        assert (again.status_code, again.json()["error"]) == (409, "coupon_not_requested")
        revoked = await client.post(
            f"/api/v1/admin/coupons/{requested}/decision", json={"decision": "revoke"}, headers=csrf
        )
        assert revoked.json()["status"] == "revoked"
    actions = [
        r["action"] for r in await db.fetch("SELECT action FROM audit_log WHERE object_type = 'coupon' ORDER BY id")
    ]
    assert actions == ["coupon.create", "coupon.request", "coupon.approve", "coupon.revoke"]


async def test_partner_sees_its_codes_uses_and_holds_only(db: asyncpg.Connection, settings: Settings) -> None:
    w = await world(db)
    offer = w.ids["public_offer"]
    await db.execute("INSERT INTO coupons (offer_id, partner_id, code) VALUES ($1, $2, 'ALICE10')", offer, w.a_partner)
    await db.execute(
        "INSERT INTO coupons (offer_id, partner_id, code) VALUES ($1, $2, 'BBB_SECRET')", offer, w.b_partner
    )
    held = await _held(db, w, w.a_partner, offer, "o-1", "self_referral")
    await _held(db, w, w.b_partner, offer, "BBB_SECRET_held", "too_soon")
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                    currency, status, hold_until, coupon, credited_by)
           VALUES (gen_random_uuid(), now(), 'purchase', $1, $2, $3, 'o-2', 2500, 'USD', 'pending', now(), 'ALICE10',
                   'coupon')""",
        w.merchant_id,
        offer,
        w.a_partner,
    )
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
        mine = (await client.get("/api/v1/partner/coupons")).json()["coupons"]
        assert [(c["code"], c["uses"], c["held_uses"], c["sales_minor"]) for c in mine] == [
            ("ALICE10", 2, 1, {"USD": 7500})
        ]
        holds = await client.get("/api/v1/partner/holds")
        assert [(h["event_id"], h["held_reason"], h["status"]) for h in holds.json()["conversions"]] == [
            (held, "self_referral", "held")
        ]
        assert "BBB_SECRET" not in holds.text and "BBB_SECRET" not in (await client.get("/api/v1/partner/coupons")).text
        assert (await client.get("/api/v1/admin/holds")).status_code == 404  # not a partner's route


async def test_operator_reviews_a_hold_with_a_reason(db: asyncpg.Connection, settings: Settings) -> None:
    w = await world(db)
    offer = w.ids["public_offer"]
    keep = await _held(db, w, w.a_partner, offer, "o-keep", "multi_partner")
    drop = await _held(db, w, w.a_partner, offer, "o-drop", "datacenter")
    async with portal_client(settings) as client:  # another merchant's operator: as if it did not exist
        csrf = csrf_headers(await login(client, "ops@bbb.example"))
        foreign = await client.post(f"/api/v1/admin/holds/{keep}/decision", json={"decision": "approve", "reason": "x"},
                                    headers=csrf)  # fmt: skip
        assert foreign.status_code == 404
        assert (await client.get("/api/v1/admin/holds")).json()["conversions"] == []
    async with portal_client(settings) as client:
        csrf = csrf_headers(await login(client, "ops@shop-m.example"))
        listed = (await client.get("/api/v1/admin/holds")).json()["conversions"]
        assert sorted(h["order_id"] for h in listed) == ["o-drop", "o-keep"]
        for body, status, code in (
            ({"decision": "approve"}, 400, "invalid_field"),  # a decision needs its reason
            ({"decision": "maybe", "reason": "x"}, 400, "invalid_field"),
        ):
            answer = await client.post(f"/api/v1/admin/holds/{keep}/decision", json=body, headers=csrf)
            assert (answer.status_code, answer.json()["error"]) == (status, code)
        missing = await client.post(
            "/api/v1/admin/holds/not-a-uuid/decision", json={"decision": "approve", "reason": "x"}, headers=csrf
        )
        assert missing.status_code == 404
        assert await db.fetchval("SELECT count(*) FROM conversions WHERE status = 'held'") == 2  # nothing written
        ok = await client.post(
            f"/api/v1/admin/holds/{keep}/decision", json={"decision": "approve", "reason": "regular customer"},
            headers=csrf,
        )  # fmt: skip
        no = await client.post(
            f"/api/v1/admin/holds/{drop}/decision", json={"decision": "reject", "reason": "cloud traffic"}, headers=csrf
        )
        assert (ok.json()["status"], no.json()["status"], no.json()["reason"]) == (
            "pending",
            "rejected",
            "fraud_rejected",
        )
        twice = await client.post(
            f"/api/v1/admin/holds/{keep}/decision", json={"decision": "reject", "reason": "oops"}, headers=csrf
        )
        assert (twice.status_code, twice.json()["error"]) == (409, "not_held")
    audit = await db.fetch(
        "SELECT action, object_id, detail::text FROM audit_log WHERE object_type = 'conversion' ORDER BY id"
    )
    assert [(a["action"], a["object_id"]) for a in audit] == [("conversion.approve", keep), ("conversion.reject", drop)]
    assert "cloud traffic" in audit[1]["detail"]
    row = await db.fetchrow("SELECT reviewed_by, review_note FROM conversions WHERE event_id = $1::uuid", drop)
    assert (row["reviewed_by"], row["review_note"]) == ("ops@shop-m.example", "cloud traffic")


@pytest.mark.parametrize(
    ("rules", "pointer"),
    [
        ({"too_soon_seconds": -1}, "/fraud_rules/too_soon_seconds"),
        ({"rate_factor": "5"}, "/fraud_rules/rate_factor"),
        ({"on_expiry": "pay"}, "/fraud_rules/on_expiry"),
        ({"forbidden_referrers": ["ok.example", "not a host"]}, "/fraud_rules/forbidden_referrers/1"),
        ({"surprise": True}, "/fraud_rules/surprise"),
    ],
)
async def test_fraud_rules_are_validated_with_a_pointer(
    db: asyncpg.Connection, settings: Settings, rules: dict, pointer: str
) -> None:
    w = await world(db)
    offer = w.ids["public_offer"]
    async with portal_client(settings) as client:
        csrf = csrf_headers(await login(client, "ops@shop-m.example"))
        answer = await client.put(
            f"/api/v1/admin/offers/{offer}/attribution", json={"fraud_rules": rules}, headers=csrf
        )
        assert answer.status_code == 400, answer.text
        assert (answer.json()["error"], answer.json()["pointer"]) == ("invalid_fraud_rules", pointer)
    assert await db.fetchval("SELECT fraud_rules::text FROM offers WHERE id = $1", offer) == "{}"


async def test_offer_attribution_settings(db: asyncpg.Connection, settings: Settings) -> None:
    w = await world(db)
    offer = w.ids["public_offer"]
    async with portal_client(settings) as client:
        csrf = csrf_headers(await login(client, "ops@shop-m.example"))
        body = {"attribution_model": "first_click", "coupon_policy": "no_click", "fraud_rules": {"too_soon_seconds": 5}}
        answer = await client.put(f"/api/v1/admin/offers/{offer}/attribution", json=body, headers=csrf)
        assert answer.status_code == 200, answer.text
        got = answer.json()
        assert (got["attribution_model"], got["coupon_policy"], got["fraud_rules"]) == (
            "first_click",
            "no_click",
            {"too_soon_seconds": 5},
        )
        assert got["fraud_rules_in_effect"]["hold_days"] == 30 and got["fraud_rules_in_effect"]["too_soon_seconds"] == 5
        bad = await client.put(
            f"/api/v1/admin/offers/{offer}/attribution", json={"coupon_policy": "sometimes"}, headers=csrf
        )
        assert bad.status_code == 400
        foreign = await client.put(
            f"/api/v1/admin/offers/{w.ids['b_only_offer']}/attribution", json={"coupon_policy": "always"}, headers=csrf
        )
        assert foreign.status_code == 404
        ref = await client.put(
            f"/api/v1/admin/partners/{w.a_partner}/customer-ref", json={"customer_ref": "cust-alice"}, headers=csrf
        )
        assert ref.status_code == 200, ref.text
    assert (
        await db.fetchval(
            "SELECT customer_ref FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2",
            w.a_partner,
            w.merchant_id,
        )
        == "cust-alice"
    )
    assert await db.fetchval("SELECT coupon_policy FROM offers WHERE id = $1", w.ids["b_only_offer"]) == "always"
