"""The operator's API: offers with every term validated, partners, links, banners, products, rates,
statements, and an audit row for every change. Refusals write nothing."""

from __future__ import annotations

import base64
import re
import struct
import zlib

import pytest

from clickmint.embedded import pick_port
from kernel.redis.pyclient import Lazy
from tests.factories import programme
from tests.helpers import tracker_client
from tests.portal.kit import add_user, csrf_headers, login, portal_client, world


def png(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


OFFER = {
    "name": "Winter sale",
    "destination_url": "https://shop.example/winter?cid={click_id}",
    "visibility": "partners",
    "fee_plan": {"cps_percent": "8"},
    "caps": {"clicks": {"daily": 1000}, "per_partner": {"conversions": {"lifetime": 50}}},
    "hold_days": 14,
    "repeat_actions": True,
    "allowed_hosts": ["shop.example"],
    "starts_at": "2030-01-01T00:00:00Z",
}


async def test_an_offer_created_is_audited_and_open_to_partners(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        made = await client.post("/api/v1/admin/offers", json=OFFER, headers=csrf_headers(csrf))
        assert made.status_code == 201, made.text
        offer = made.json()
        assert (offer["merchant_id"], offer["currency"], offer["hold_days"]) == (w.merchant_id, "USD", 14)
        assert offer["repeat_actions"] is True
        assert offer["fee_plan"] == {"cps_percent": "8"} and len(offer["postback_secret"]) >= 32
        changed = await client.patch(
            f"/api/v1/admin/offers/{offer['id']}",
            json={"status": "paused", "ends_at": "2030-02-01T00:00:00Z"},
            headers=csrf_headers(csrf),
        )
        assert changed.status_code == 200 and changed.json()["status"] == "paused"
        audit = (await client.get("/api/v1/admin/audit")).json()["entries"]
        assert [(e["action"], e["object_type"], e["actor_email"]) for e in audit[:2]] == [
            ("update", "offer", "ops@shop-m.example"),
            ("create", "offer", "ops@shop-m.example"),
        ]
    with pytest.raises(Exception, match="append-only"):
        await db.execute("UPDATE audit_log SET actor_email = 'someone@else'")
    with pytest.raises(Exception, match="append-only"):
        await db.execute("DELETE FROM audit_log")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"destination_url": "javascript:alert(1)"}, "invalid_field"),
        ({"destination_url": "https://user:pw@evil.example/"}, "invalid_field"),
        ({"fee_plan": {"cps_percent": 8.5}}, "invalid_fee_plan"),  # every case: portal/test_fee_plan_schema.py
        ({"fee_plan": {"cpa": "lots"}}, "invalid_fee_plan"),
        ({"caps": {"clicks": {"daily": -1}}}, "invalid_caps"),
        ({"caps": {"clicks": {"weekly": 5}}}, "invalid_caps"),
        ({"hold_days": 400}, "invalid_field"),
        ({"repeat_actions": "sometimes"}, "invalid_field"),
        ({"attribution_window_s": "1e9"}, "invalid_field"),
        ({"ends_at": "2029-01-01T00:00:00Z"}, "invalid_field"),
        ({"starts_at": "2030-01-01T00:00:00"}, "invalid_field"),
        ({"currency": "XYZ"}, "invalid_field"),
        ({"allowed_hosts": ["evil.example/path"]}, "invalid_field"),
        ({"postback_ip_allowlist": ["300.1.1.1"]}, "invalid_field"),
        ({"name": ""}, "invalid_field"),
        ({"name": "x" * 201}, "invalid_field"),
        ({"name": "bad\x00name"}, "invalid_field"),
        ({"is_admin": True}, "unknown_field"),
        ({"merchant_id": 999}, "not_found"),
    ],
)
async def test_bad_offers_are_refused_and_write_nothing(db, settings, change, code):
    await world(db)
    before = await db.fetchval("SELECT count(*) FROM offers")
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        response = await client.post("/api/v1/admin/offers", json={**OFFER, **change}, headers=csrf_headers(csrf))
        assert 400 <= response.status_code < 500
        assert response.json()["error"] == code, response.text
    assert await db.fetchval("SELECT count(*) FROM offers") == before
    assert await db.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_partners_apply_are_approved_and_suspended(db, settings):
    w = await world(db)
    async with portal_client(settings) as partner:
        csrf = await login(partner, "alice@p.example")
        applied = await partner.post(
            "/api/v1/partner/programmes", json={"merchant": "bbb-only"}, headers=csrf_headers(csrf)
        )
        assert applied.json()["status"] == "applied"
        assert all(
            o["merchant_id"] != w.other_merchant_id
            for o in (await partner.get("/api/v1/partner/offers")).json()["offers"]
        )
        async with portal_client(settings) as ops:
            ops_csrf = await login(ops, "ops@bbb.example")
            listed = (await ops.get("/api/v1/admin/partners")).json()["partners"]
            assert any(p["id"] == w.a_partner and p["status"] == "applied" for p in listed)
            approved = await ops.post(
                f"/api/v1/admin/partners/{w.a_partner}/status",
                json={"status": "approved"},
                headers=csrf_headers(ops_csrf),
            )
            assert approved.status_code == 200
            offers = (await partner.get("/api/v1/partner/offers")).json()["offers"]
            assert any(o["merchant_id"] == w.other_merchant_id for o in offers)
            await ops.post(
                f"/api/v1/admin/partners/{w.a_partner}/status",
                json={"status": "suspended"},
                headers=csrf_headers(ops_csrf),
            )
            offers = (await partner.get("/api/v1/partner/offers")).json()["offers"]
            assert all(o["merchant_id"] != w.other_merchant_id for o in offers)


async def test_new_partner_is_invited_by_mail(db, settings):
    """An operator invites an address; the partner exists only once whoever reads that mailbox accepts, and
    then sets its own password through a second mail to the same address."""
    await world(db)
    async with portal_client(settings) as ops:
        csrf = await login(ops, "ops@shop-m.example")
        made = await ops.post(
            "/api/v1/admin/partners", json={"name": "Carol", "email": "Carol@P.example"}, headers=csrf_headers(csrf)
        )
        assert made.status_code == 201, made.text
        assert made.json()["status"] == "pending" and made.json()["email"] == "carol@p.example"
        again = await ops.post(
            "/api/v1/admin/partners", json={"name": "Carol", "email": "carol@p.example"}, headers=csrf_headers(csrf)
        )
        assert again.status_code == 201 and again.json()["invitation_id"] == made.json()["invitation_id"]
        assert [i["status"] for i in (await ops.get("/api/v1/admin/invitations")).json()["invitations"]] == ["pending"]
        assert await db.fetchval("SELECT count(*) FROM partners WHERE email = 'carol@p.example'") == 0
        mails = await db.fetch("SELECT body FROM outbox WHERE to_email = 'carol@p.example' ORDER BY id")
        assert len(mails) == 2  # the second invitation replaced the first: only its link works
        first = re.search(r"/invitation\?token=(\S+)", mails[0]["body"]).group(1)
        token = re.search(r"/invitation\?token=(\S+)", mails[1]["body"]).group(1)
        assert (await ops.post("/api/v1/invitations/accept", json={"token": first})).status_code == 400
        accepted = await ops.post("/api/v1/invitations/accept", json={"token": token})
        assert accepted.status_code == 200 and accepted.json()["set_password"] is True
        partners = (await ops.get("/api/v1/admin/partners")).json()["partners"]
        assert [(p["email"], p["status"]) for p in partners if p["email"] == "carol@p.example"] == [
            ("carol@p.example", "approved")
        ]
    mail = await db.fetchrow("SELECT to_email, body FROM outbox ORDER BY id DESC LIMIT 1")
    assert mail["to_email"] == "carol@p.example" and "/reset?token=" in mail["body"]
    assert await db.fetchval("SELECT password_hash FROM users WHERE email = 'carol@p.example'") is None
    assert await db.fetchval("SELECT role FROM users WHERE email = 'carol@p.example'") == "partner"


async def test_an_invitation_can_be_withdrawn(db, settings):
    w = await world(db)
    async with portal_client(settings) as ops:
        csrf = await login(ops, "ops@shop-m.example")
        made = (
            await ops.post(
                "/api/v1/admin/partners", json={"name": "Dan", "email": "dan@p.example"}, headers=csrf_headers(csrf)
            )
        ).json()
        withdrawn = await ops.delete(f"/api/v1/admin/invitations/{made['invitation_id']}", headers=csrf_headers(csrf))
        assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
        twice = await ops.delete(f"/api/v1/admin/invitations/{made['invitation_id']}", headers=csrf_headers(csrf))
        assert twice.status_code == 409
        token = re.search(r"/invitation\?token=(\S+)", await db.fetchval("SELECT body FROM outbox")).group(1)
        assert (await ops.post("/api/v1/invitations/accept", json={"token": token})).status_code == 400
        # Another merchant's operator cannot see or withdraw it.
        async with portal_client(settings) as other:
            other_csrf = await login(other, "ops@bbb.example")
            assert (await other.get("/api/v1/admin/invitations")).json()["invitations"] == []
            gone = await other.delete(
                f"/api/v1/admin/invitations/{made['invitation_id']}", headers=csrf_headers(other_csrf)
            )
            assert gone.status_code == 404
    assert await db.fetchval("SELECT count(*) FROM partner_programmes WHERE merchant_id = $1", w.merchant_id) == 2


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        (png(300, 250), True),
        (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", True),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", False),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, False),
        (png(5000, 10), False),
        (b"MZ\x90\x00 not an image", False),
        (png(10, 10) + b"\x00" * (1024 * 1024), False),
    ],
)
async def test_banner_uploads_are_checked_by_their_bytes(db, settings, image, ok):
    w = await world(db)
    async with portal_client(settings) as ops:
        csrf = await login(ops, "ops@shop-m.example")
        body = {"offer_id": w.ids["public_offer"], "name": "Banner", "image_base64": base64.b64encode(image).decode()}
        response = await ops.post("/api/v1/admin/creatives", json=body, headers=csrf_headers(csrf))
        multipart = await ops.post(
            "/api/v1/admin/creatives",
            data={"offer_id": str(w.ids["public_offer"]), "name": "Banner 2"},
            files={"image": ("banner.svg", image, "image/svg+xml")},
            headers=csrf_headers(csrf),
        )
    if ok:
        assert response.status_code == 201 and multipart.status_code == 201, (response.text, multipart.text)
        assert response.json()["content_type"] in ("image/png", "image/gif")
    else:
        assert response.status_code in (400, 413) and multipart.status_code in (400, 413)
        assert response.json()["error"] in ("invalid_image", "invalid_field", "too_large")
    count = await db.fetchval("SELECT count(*) FROM creatives WHERE offer_id = $1", w.ids["public_offer"])
    assert count == (2 if ok else 0)


async def test_products_wholesale_versions_and_rates(db, settings):
    w = await world(db)
    async with portal_client(settings) as ops:
        csrf = await login(ops, "ops@shop-m.example")
        h = csrf_headers(csrf)
        made = await ops.post(
            "/api/v1/admin/products",
            json={"sku": "MUG-1", "name": "Mug", "wholesale": "10.00", "currency": "USD"},
            headers=h,
        )
        assert made.status_code == 201
        await ops.post(
            "/api/v1/admin/products",
            json={"sku": "MUG-1", "name": "Mug", "wholesale": "11.00", "currency": "USD"},
            headers=h,
        )
        bad = await ops.post(
            "/api/v1/admin/products",
            json={"sku": "MUG 1", "name": "Mug", "wholesale": "1", "currency": "USD"},
            headers=h,
        )
        assert bad.status_code == 400
        yen = await ops.post(
            "/api/v1/admin/products",
            json={"sku": "CUP", "name": "Cup", "wholesale": "10.5", "currency": "JPY"},
            headers=h,
        )
        assert yen.status_code == 400 and yen.json()["error"] == "invalid_field"
        (mug,) = (await ops.get("/api/v1/admin/products")).json()["products"]
        assert mug["wholesale"] == "11.00"
        rate = await ops.post("/api/v1/admin/rates", json={"base": "EUR", "quote": "USD", "rate": "1.0825"}, headers=h)
        assert rate.status_code == 201 and rate.json()["rate"] == "1.0825"
        for bad_rate in ("1e3", "-1", "0", "1.12345678901", 1.08):
            r = await ops.post("/api/v1/admin/rates", json={"base": "EUR", "quote": "USD", "rate": bad_rate}, headers=h)
            assert r.status_code == 400, bad_rate
        same = await ops.post("/api/v1/admin/rates", json={"base": "EUR", "quote": "EUR", "rate": "1"}, headers=h)
        assert same.status_code == 400
    assert (
        await db.fetchval("SELECT count(*) FROM prices WHERE kind = 'wholesale' AND merchant_id = $1", w.merchant_id)
        == 2
    )
    assert await db.fetchval("SELECT count(*) FROM currency_rates") == 1


async def test_network_operator_sees_every_merchant_and_creates_merchants(db, settings):
    w = await world(db)
    await add_user(db, "net@clickmint.example", "network")
    async with portal_client(settings) as net:
        csrf = await login(net, "net@clickmint.example")
        ids = {m["id"] for m in (await net.get("/api/v1/admin/merchants")).json()["merchants"]}
        assert ids == {w.merchant_id, w.other_merchant_id}
        made = await net.post(
            "/api/v1/admin/merchants",
            json={"slug": "acme", "name": "ACME", "branding": {"primary": "#112233", "tagline": "Sell ACME"}},
            headers=csrf_headers(csrf),
        )
        assert made.status_code == 201 and made.json()["branding"]["primary"] == "#112233"
        bad = await net.post(
            "/api/v1/admin/merchants", json={"slug": "Bad Slug", "name": "x"}, headers=csrf_headers(csrf)
        )
        assert bad.status_code == 400
        colour = await net.post(
            "/api/v1/admin/merchants",
            json={"slug": "x2", "name": "x", "branding": {"primary": "red;}"}},
            headers=csrf_headers(csrf),
        )
        assert colour.status_code == 400
        no_merchant = await net.post("/api/v1/admin/offers", json=OFFER, headers=csrf_headers(csrf))
        assert no_merchant.status_code == 400 and "merchant_id" in no_merchant.json()["detail"]
    async with portal_client(settings) as ops:
        csrf = await login(ops, "ops@shop-m.example")
        refused = await ops.post(
            "/api/v1/admin/merchants", json={"slug": "mine", "name": "Mine"}, headers=csrf_headers(csrf)
        )
        assert refused.status_code == 403
    assert await db.fetchval("SELECT count(*) FROM merchants") == 3


async def test_cap_usage_shows_what_the_tracker_counted(db, settings):
    """Per cap, offer-wide and per partner: the limit, what the tracker's counters hold today, what is left.
    Another merchant's operator and an unknown offer get a 404; unreadable counters a 503 with a code."""
    w = await world(db)
    caps = {"clicks": {"daily": 10}, "per_partner": {"clicks": {"lifetime": 4}}}
    prog = await programme(db, caps=caps, fallback_url="https://fallback.example.org/")
    await add_user(db, "ops@capped.example", "operator", merchant_id=prog.merchant_id)
    async with tracker_client(settings) as (_app, tracker):
        for i in range(6):  # four within the partner's lifetime cap, then two over it
            await tracker.get(f"/c/{prog.code}", headers={"user-agent": f"Mozilla/5.0 visitor-{i}"})
    path = f"/api/v1/admin/offers/{prog.offer_id}/caps"
    async with portal_client(settings) as client:
        await login(client, "ops@capped.example")
        usage = await client.get(path)
        unknown = await client.get("/api/v1/admin/offers/999999/caps")
        page = (await client.get("/admin/offers")).text
        client.app.state.portal.redis = Lazy(f"redis://127.0.0.1:{pick_port(0)}", "no")  # nothing listens there
        down = await client.get(path)
        blind_page = await client.get("/admin/offers")
    async with portal_client(settings) as client:
        await login(client, "ops@shop-m.example")  # merchant M's operator
        foreign = await client.get(path)
        uncapped = await client.get(f"/api/v1/admin/offers/{w.ids['public_offer']}/caps")
    assert usage.status_code == 200, usage.text
    assert usage.json()["currency"] == "USD" and usage.json()["caps"] == [
        {
            "metric": "clicks",
            "period": "daily",
            "scope": "offer",
            "partner_id": None,
            "limit": 10,
            "used": 4,
            "remaining": 6,
        },
        {
            "metric": "clicks",
            "period": "lifetime",
            "scope": "partner",
            "partner_id": prog.partner_id,
            "limit": 4,
            "used": 4,
            "remaining": 0,
        },
    ]
    assert (unknown.status_code, unknown.json()["error"]) == (404, "not_found")
    assert (foreign.status_code, foreign.json()["error"]) == (404, "not_found")
    assert (down.status_code, down.json()["error"]) == (503, "redis_unavailable")
    assert uncapped.status_code == 200 and uncapped.json()["caps"] == []
    assert "clicks, daily: 4 of 10 used today" in page
    assert "clicks, lifetime, per partner: 1 of 1 at the cap (most used: 4 of 4)" in page
    assert blind_page.status_code == 200 and "usage unavailable right now" in blind_page.text


async def test_offer_conversion_sources_are_checked_and_shown(db, settings):
    w = await world(db)
    async with portal_client(settings) as ops:
        csrf = await login(ops, "ops@shop-m.example")
        path = f"/api/v1/admin/offers/{w.ids['public_offer']}"
        shown = (await ops.get(path)).json()
        assert shown["conversion_sources"] == {
            "pixel": ["action"],
            "cookie": ["action"],
            "postback": ["action", "purchase", "refund"],
            "tune": ["action", "purchase"],
        }
        assert (shown["pixel_max_amount"], shown["tune_token"]) == (None, None)
        for bad in (
            {"conversion_sources": {"pixel": ["action", "refund"]}},
            {"conversion_sources": {"cookie": ["refund"]}},
            {"conversion_sources": {"tune": ["refund"]}},
            {"conversion_sources": {"email": ["action"]}},
            {"conversion_sources": {"pixel": "purchase"}},
            {"conversion_sources": {"pixel": ["sale"]}},
            {"pixel_max_amount": "1.234"},
            {"pixel_max_amount": "0"},
            {"tune_token": "short"},
        ):
            refused = await ops.patch(path, json=bad, headers=csrf_headers(csrf))
            assert refused.status_code == 400 and refused.json()["error"] == "invalid_field", (bad, refused.text)
        changed = await ops.patch(
            path,
            json={
                "conversion_sources": {"pixel": ["action", "purchase"]},
                "pixel_max_amount": "250.00",
                "tune_token": "my-own-tune-token-0123456789",
            },
            headers=csrf_headers(csrf),
        )
        assert changed.status_code == 200, changed.text
        body = changed.json()
        assert body["conversion_sources"]["pixel"] == ["action", "purchase"]
        assert body["conversion_sources"]["postback"] == ["action", "purchase", "refund"]  # the default stays
        assert (body["pixel_max_amount"], body["tune_token"]) == ("250.00", "my-own-tune-token-0123456789")
        generated = (await ops.patch(path, json={"tune_token": "generate"}, headers=csrf_headers(csrf))).json()
        assert len(generated["tune_token"]) >= 32 and generated["tune_token"] != body["tune_token"]
        cleared = (
            await ops.patch(path, json={"tune_token": "none", "pixel_max_amount": "none"}, headers=csrf_headers(csrf))
        ).json()
        assert (cleared["tune_token"], cleared["pixel_max_amount"]) == (None, None)
    assert await db.fetchval("SELECT pixel_max_amount_minor FROM offers WHERE id = $1", w.ids["public_offer"]) is None
    audit = await db.fetchval("SELECT string_agg(detail::text, ' ') FROM audit_log")
    assert "my-own-tune-token" not in audit  # a token never lands in the audit log


async def test_operators_see_refused_conversions_with_their_reason(db, settings):
    w = await world(db)
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                    currency, status, reason, hold_until, via, authenticated)
           VALUES (gen_random_uuid(), now(), 'purchase', $1, $2, $3, 'P-1', 500, 'USD', 'rejected', 'superseded',
                   now(), 'pixel', false)""",
        w.merchant_id,
        w.ids["public_offer"],
        w.a_partner,
    )
    async with portal_client(settings) as ops:
        await login(ops, "ops@shop-m.example")
        found = (await ops.get("/api/v1/admin/conversions", params={"reason": "superseded"})).json()
        assert [(c["order_id"], c["via"], c["authenticated"], c["amount"]) for c in found["conversions"]] == [
            ("P-1", "pixel", False, "5.00")
        ]
        everything = (await ops.get("/api/v1/admin/conversions")).json()["conversions"]
        assert len(everything) == 2  # and B's order in the world
        page = (await ops.get("/admin/conversions")).text
        assert "superseded" in page and "P-1" in page
        doc = (await ops.get("/api/v1/openapi.json")).json()
        reasons = doc["components"]["schemas"]["ConversionReason"]["enum"]
        assert {"source_not_allowed", "amount_over_pixel_max", "tune_not_enabled", "superseded"} <= set(reasons)
        assert {"refund_needs_authentication", "duplicate_order"} <= set(reasons)
    async with portal_client(settings) as other:
        await login(other, "ops@bbb.example")
        assert (await other.get("/api/v1/admin/conversions")).json()["conversions"] == []


@pytest.mark.parametrize("period", ["9999-12", "2026-13", "soon"])
async def test_a_period_that_is_no_month_is_a_400(db, settings, period):
    """9999-12 has no following month: it used to be an OverflowError and a 500."""
    await world(db)
    async with portal_client(settings) as client:
        await login(client, "ops@shop-m.example")
        response = await client.get("/api/v1/admin/statements", params={"period": period})
        assert response.status_code == 400, response.text
        assert response.json() == {"error": "invalid_field", "detail": "period: must be a month like 2026-11"}
