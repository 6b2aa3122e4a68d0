"""Another merchant's banner on one's own link, tried on the real portal and tracker: merchant M's operator
creates a link on its own offer for its own partner naming the other merchant's banner, then serves it from
the tracker's /b/{link}. The link is refused as if the banner did not exist, and nothing is served."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg

from kernel.settings import Settings
from tests.portal.kit import PASSWORD, world
from tests.portal.test_operator_api import png
from tests.security.live import live


async def test_an_operator_cannot_serve_another_merchants_banner(settings: Settings, db: asyncpg.Connection):
    w = await world(db)
    secret_banner = png(7, 3)
    await db.execute(
        "UPDATE creatives SET body = $2, width = 7, height = 3, sha256 = $3 WHERE id = $1",
        w.ids["b_creative"],
        secret_banner,
        hashlib.sha256(secret_banner).hexdigest(),
    )
    async with live(settings, ingest=False) as lv, lv.client() as ops:
        login = await ops.post(
            f"{lv.portal_url}/api/v1/auth/login", json={"email": "ops@shop-m.example", "password": PASSWORD}
        )
        headers = {"x-csrf-token": login.json()["csrf_token"]}
        made = await ops.post(
            f"{lv.portal_url}/api/v1/admin/links",
            json={"offer_id": w.ids["public_offer"], "partner_id": w.a_partner, "creative_id": w.ids["b_creative"]},
            headers=headers,
        )
        assert made.status_code == 404, made.text
        assert made.json()["error"] == "not_found"
        # The same through the operator's page form.
        page = await ops.post(
            f"{lv.portal_url}/admin/links",
            data={
                "offer_id": str(w.ids["public_offer"]),
                "partner_id": str(w.a_partner),
                "creative_id": str(w.ids["b_creative"]),
                "csrf_token": headers["x-csrf-token"],
            },
        )
        assert page.status_code == 404
        codes = [r["code"] for r in await db.fetch("SELECT code FROM links WHERE creative_id IS NOT NULL")]
        if codes:
            await asyncio.sleep(1.2)  # the tracker reloads a new link within a second
        for code in codes:
            served = await ops.get(f"{lv.tracker_url}/b/{code}")
            assert served.content != secret_banner
    assert codes == []
