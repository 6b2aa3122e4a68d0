"""The operator's loyalty page: liability by month of expiry, member search, and an adjustment form that
answers a mistake on the same page (error summary, values kept, nothing written)."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing import loyalty_ledger as ledger
from kernel.settings import Settings
from tests.loyalty_kit import shop
from tests.portal.kit import add_user, login, portal_client


async def test_operator_loyalty_page(db: asyncpg.Connection, settings: Settings) -> None:
    prog = await shop(db, expiry_days=30)
    other = await shop(db)
    await add_user(db, "ops@shop.example", "operator", merchant_id=prog.merchant_id)
    loyalty = await ledger.programme_of(db, prog.merchant_id)
    await ledger.adjust(db, loyalty, "alice@x", 123_456, "gift", "test")
    await ledger.adjust(db, await ledger.programme_of(db, other.merchant_id), "zed@other", 5, "gift", "test")
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop.example")
        page = await client.get("/admin/loyalty")
        assert page.status_code == 200
        month = (dt.datetime.now(dt.UTC) + dt.timedelta(days=30)).strftime("%B %Y")
        assert month in page.text and "123,456" in page.text and "1,234.56" in page.text
        assert "alice@x" in page.text and "zed@other" not in page.text  # only its own merchant's members
        assert "No member matches." in (await client.get("/admin/loyalty?q=zed")).text
        assert "merchant_id" not in page.text
        theirs = await client.get(f"/admin/loyalty?merchant_id={other.merchant_id}")
        assert theirs.status_code == 404
        bad = await client.post(
            "/admin/loyalty", data={"csrf_token": csrf, "customer": "alice@x", "points": "lots", "reason": ""}
        )
        assert bad.status_code == 400
        assert "There is a problem" in bad.text and 'aria-invalid="true"' in bad.text
        assert 'value="alice@x"' in bad.text and 'value="lots"' in bad.text  # the values are kept
        too_many = await client.post(
            "/admin/loyalty", data={"csrf_token": csrf, "customer": "alice@x", "points": "-200000", "reason": "x"}
        )
        assert too_many.status_code == 400 and "points" in too_many.text
        no_csrf = await client.post("/admin/loyalty", data={"customer": "alice@x", "points": "5", "reason": "x"})
        assert no_csrf.status_code == 403
        ok = await client.post(
            "/admin/loyalty",
            data={"csrf_token": csrf, "customer": "alice@x", "points": "-1,000", "reason": "goodwill"},
            follow_redirects=False,
        )
        assert ok.status_code == 303
    assert await db.fetchval("SELECT balance FROM loyalty_members WHERE customer_ref = 'alice@x'") == 122_456
    assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'loyalty.adjust'") == 3
