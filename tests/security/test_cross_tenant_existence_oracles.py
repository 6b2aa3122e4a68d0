"""Cross-tenant existence oracles, tried on the real portal: an operator or a partner asks about something
outside its tenant (another merchant's partner e-mail or user e-mail, another merchant's SKU or banner) and
compares the answer with the one for something that does not exist at all. The two answers are the same."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from kernel.settings import Settings
from tests.portal.kit import PASSWORD, world
from tests.security.live import live


async def _login(client: httpx.AsyncClient, base: str, email: str) -> dict[str, str]:
    response = await client.post(f"{base}/api/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"x-csrf-token": response.json()["csrf_token"]}


def _shape(response: httpx.Response, *volatile: str) -> tuple[int, Any]:
    """The status and the body with the fields that differ by nature (ids, the e-mail typed) taken out."""
    body = response.json()
    if isinstance(body, dict):
        body = {k: ("<volatile>" if k in volatile else v) for k, v in body.items()}
    return response.status_code, body


async def test_an_operator_cannot_tell_which_emails_exist_elsewhere(settings: Settings, db: asyncpg.Connection):
    w = await world(db)  # merchant M (partners alice, bbb_secret; operator ops@shop-m) and the other merchant
    async with live(settings, ingest=False) as lv, lv.client() as ops:
        headers = await _login(ops, lv.portal_url, "ops@bbb.example")
        base = {"merchant_id": w.other_merchant_id}

        async def invite(email: str) -> httpx.Response:
            return await ops.post(
                f"{lv.portal_url}/api/v1/admin/partners", json={**base, "name": "P", "email": email}, headers=headers
            )

        elsewhere, nowhere = await invite("alice@p.example"), await invite("nobody-at-all@p.example")
        assert _shape(elsewhere, "invitation_id", "email") == _shape(nowhere, "invitation_id", "email")
        assert elsewhere.status_code == 201

        async def operator(email: str) -> httpx.Response:
            return await ops.post(
                f"{lv.portal_url}/api/v1/admin/users",
                json={**base, "email": email, "role": "operator"},
                headers=headers,
            )

        taken, free = await operator("ops@shop-m.example"), await operator("brand-new@bbb.example")
        assert _shape(taken, "email") == _shape(free, "email")
        assert taken.status_code == 201, taken.text
    # The taken address was not given a second account; its owner was told by mail, not the asking operator.
    assert await db.fetchval("SELECT role FROM users WHERE email = 'ops@shop-m.example'") == "operator"
    assert await db.fetchval("SELECT merchant_id FROM users WHERE email = 'ops@shop-m.example'") == w.merchant_id


async def test_a_partner_cannot_probe_another_merchants_skus(settings: Settings, db: asyncpg.Connection):
    w = await world(db)  # BBB-SKU belongs to the other merchant, where alice is not a member
    async with live(settings, ingest=False) as lv, lv.client() as alice:
        headers = await _login(alice, lv.portal_url, "alice@p.example")

        async def price(merchant_id: int, sku: str, retail: str = "1.234") -> httpx.Response:
            return await alice.post(
                f"{lv.portal_url}/api/v1/partner/prices",
                json={"merchant_id": merchant_id, "sku": sku, "retail": retail},
                headers=headers,
            )

        existing, missing = await price(w.other_merchant_id, "BBB-SKU"), await price(w.other_merchant_id, "NO-SUCH")
        assert _shape(existing) == _shape(missing)
        assert existing.status_code == 404
        unknown_merchant = await price(999_999, "BBB-SKU")
        assert _shape(unknown_merchant) == _shape(existing)


async def test_an_operator_cannot_probe_or_use_another_merchants_banner(settings: Settings, db: asyncpg.Connection):
    w = await world(db)
    # The other merchant's operator attaches merchant M's banner... here: M's operator and the other merchant's banner.
    async with live(settings, ingest=False) as lv, lv.client() as ops:
        headers = await _login(ops, lv.portal_url, "ops@shop-m.example")

        async def link(creative_id: int) -> httpx.Response:
            body = {"offer_id": w.ids["public_offer"], "partner_id": w.a_partner, "creative_id": creative_id}
            return await ops.post(f"{lv.portal_url}/api/v1/admin/links", json=body, headers=headers)

        foreign, missing = await link(w.ids["b_creative"]), await link(999_999)
        assert _shape(foreign) == _shape(missing)
        assert foreign.status_code == 404
    assert await db.fetchval("SELECT count(*) FROM links WHERE creative_id IS NOT NULL") == 0
