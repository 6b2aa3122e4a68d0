"""Pages without a browser: the branded sign-in, CSRF on forms, role separation, forms that create."""

from __future__ import annotations

import re

from tests.portal.kit import PASSWORD, login, portal_client, world


def token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def test_branded_sign_in_then_the_dashboard(db, settings):
    w = await world(db)
    await db.execute(
        """UPDATE merchants SET branding = '{"primary": "#aa0000", "tagline": "Earn with Shop M <3"}' WHERE id = $1""",
        w.merchant_id,
    )
    async with portal_client(settings) as client:
        page = await client.get("/m/shop-m")
        assert page.status_code == 200
        assert "Shop M partner programme" in page.text and "--primary: #aa0000" in page.text
        assert "Earn with Shop M &lt;3" in page.text  # escaped
        assert (await client.get("/m/no-such-shop")).status_code == 404
        csrf = token(page.text)
        no_csrf = await client.post("/login", data={"email": "alice@p.example", "password": PASSWORD})
        assert no_csrf.status_code == 403 and "cm_session" not in client.cookies
        wrong = await client.post(
            "/login", data={"email": "alice@p.example", "password": "nope", "csrf_token": csrf, "merchant": "shop-m"}
        )
        assert wrong.status_code == 401 and "wrong e-mail or password" in wrong.text and "#aa0000" in wrong.text
        signed = await client.post(
            "/login", data={"email": "alice@p.example", "password": PASSWORD, "csrf_token": csrf}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
        dashboard = await client.get("/dashboard")
        assert dashboard.status_code == 200 and "Dashboard" in dashboard.text
        assert (await client.get("/admin")).status_code == 404  # an operator page is not there for a partner


async def test_sign_in_never_redirects_off_site(db, settings):
    await world(db)
    async with portal_client(settings) as client:
        csrf = token((await client.get("/login")).text)
        for target in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
            response = await client.post(
                "/login", data={"email": "alice@p.example", "password": PASSWORD, "csrf_token": csrf, "next": target}
            )
            assert response.headers["location"] == "/dashboard"


async def test_partner_forms_create_links_and_prices(db, settings):
    w = await world(db)
    await db.execute("INSERT INTO products (merchant_id, sku, name) VALUES ($1, 'MUG-1', 'Mug')", w.merchant_id)
    await db.execute(
        """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency)
           VALUES ($1, 'MUG-1', 'wholesale', 900, 'USD')""",
        w.merchant_id,
    )
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
        offers = await client.get("/offers")
        csrf = token(offers.text)
        # "Get a link" on an offer that already has one goes to that link: one link per offer, no duplicates.
        again = await client.post("/links", data={"offer_id": str(w.ids["public_offer"]), "csrf_token": csrf})
        assert again.status_code == 303 and again.headers["location"].endswith(f"#link-{w.ids['a_link']}")
        elsewhere = await client.post("/links", data={"offer_id": str(w.ids["b_only_offer"]), "csrf_token": csrf})
        assert (
            elsewhere.status_code == 404
            and "There is a problem" in elsewhere.text
            and "no such offer" in elsewhere.text
        )
        links = await client.get("/links")
        assert links.text.count('class="click-url"') == 1
        assert await db.fetchval("SELECT count(*) FROM links WHERE partner_id = $1", w.a_partner) == 1
        # The builder keeps its inputs and shows the result on top, with copy buttons and a QR code.
        built = await client.get(f"/links?link={w.ids['a_link']}&sub1=x&url=https%3A%2F%2Fshop.example%2Fa")
        assert "sub1=x&amp;url=https%3A%2F%2Fshop.example%2Fa" in built.text
        assert built.text.index('id="built"') < built.text.index('id="f-link"')
        assert 'id="f-sub1" name="sub1" type="text" value="x"' in built.text
        assert 'data-copy="built"' in built.text and 'class="qr"' in built.text
        refused = await client.get(f"/links?link={w.ids['a_link']}&sub2=keep&url=https%3A%2F%2Fevil.example%2F")
        assert refused.status_code == 200 and "There is a problem" in refused.text
        assert 'id="f-url-error"' in refused.text and 'aria-invalid="true"' in refused.text
        assert 'value="keep"' in refused.text and 'value="https://evil.example/"' in refused.text
        below = await client.post(
            "/prices", data={"merchant_id": str(w.merchant_id), "sku": "MUG-1", "retail": "8.00", "csrf_token": csrf}
        )
        assert below.status_code == 400 and "at least the wholesale price" in below.text
        # The same page comes back, the typed price kept and the message beside its field.
        assert "Your store prices" in below.text and "There is a problem" in below.text
        assert 'aria-invalid="true"' in below.text and 'value="8.00"' in below.text
        ok = await client.post(
            "/prices", data={"merchant_id": str(w.merchant_id), "sku": "MUG-1", "retail": "12.00", "csrf_token": csrf}
        )
        assert ok.status_code == 303
        assert ">12.00<" in (await client.get("/prices")).text
        signed_out = await client.post("/logout", data={"csrf_token": csrf})
        assert signed_out.status_code == 303
        assert (await client.get("/dashboard")).status_code == 303


async def test_operator_pages_create_an_offer_and_approve(db, settings):
    w = await world(db)
    await db.execute("UPDATE partner_programmes SET status = 'applied' WHERE partner_id = $1", w.a_partner)
    async with portal_client(settings) as client:
        await login(client, "ops@shop-m.example")
        page = await client.get("/admin/offers")
        csrf = token(page.text)
        form = {
            "csrf_token": csrf,
            "name": "Cyber Monday",
            "destination_url": "https://shop.example/cm?c={click_id}",
            "visibility": "partners",
            "fee_plan": '{"cps_percent": "15"}',
            "caps": "{}",
            "hold_days": "7",
            "attribution_window_s": "86400",
            "starts_at": "2030-12-01T00:00",
            "ends_at": "",
            "postback_security": "hmac",
            "fallback_url": "",
            "allowed_hosts": "shop.example",
        }
        made = await client.post("/admin/offers", data=form)
        assert made.status_code == 303, made.text
        assert "Cyber Monday" in (await client.get("/admin/offers")).text
        bad = await client.post("/admin/offers", data={**form, "fee_plan": "{not json"})
        assert bad.status_code == 400
        approve = await client.post(
            "/admin/partners",
            data={
                "csrf_token": csrf,
                "partner_id": str(w.a_partner),
                "merchant_id": str(w.merchant_id),
                "status": "approved",
            },
        )
        assert approve.status_code == 303
        assert "approved" in (await client.get("/admin/partners")).text
        assert "create" in (await client.get("/admin/audit")).text
    assert (
        await db.fetchval("SELECT starts_at::text FROM offers WHERE name = 'Cyber Monday'") == "2030-12-01 00:00:00+00"
    )
    assert await db.fetchval("SELECT count(*) FROM offers WHERE name = 'Cyber Monday'") == 1


async def test_operator_pages_for_links_banners_products_and_rates(db, settings):
    from tests.portal.test_operator_api import png

    w = await world(db)
    async with portal_client(settings) as client:
        await login(client, "ops@shop-m.example")
        csrf = token((await client.get("/admin/links")).text)
        made = await client.post(
            "/admin/links",
            data={"csrf_token": csrf, "offer_id": str(w.ids["public_offer"]), "partner_id": str(w.a_partner)},
        )
        assert made.status_code == 303
        paused = await client.post(
            "/admin/links", data={"csrf_token": csrf, "link_id": str(w.ids["a_link"]), "status": "paused"}
        )
        assert paused.status_code == 303
        assert await db.fetchval("SELECT status FROM links WHERE id = $1", w.ids["a_link"]) == "paused"
        upload = await client.post(
            "/admin/creatives",
            data={"csrf_token": csrf, "offer_id": str(w.ids["public_offer"]), "name": "Leaderboard"},
            files={"image": ("b.png", png(728, 90), "image/png")},
        )
        assert upload.status_code == 303, upload.text
        svg = await client.post(
            "/admin/creatives",
            data={"csrf_token": csrf, "offer_id": str(w.ids["public_offer"]), "name": "Evil"},
            files={"image": ("b.svg", b"<svg onload=alert(1)>", "image/svg+xml")},
        )
        assert svg.status_code == 400
        no_csrf = await client.post(
            "/admin/creatives",
            data={"offer_id": str(w.ids["public_offer"]), "name": "X"},
            files={"image": ("b.png", png(1, 1), "image/png")},
        )
        assert no_csrf.status_code == 403
        assert "728" in (await client.get("/admin/creatives")).text
        product = await client.post(
            "/admin/products",
            data={"csrf_token": csrf, "sku": "MUG-1", "name": "Mug", "wholesale": "9.00", "currency": "USD"},
        )
        assert product.status_code == 303 and "9.00" in (await client.get("/admin/products")).text
        rate = await client.post(
            "/admin/rates", data={"csrf_token": csrf, "base": "EUR", "quote": "USD", "rate": "1.08"}
        )
        assert rate.status_code == 303 and "1.08" in (await client.get("/admin/rates")).text
    assert await db.fetchval("SELECT count(*) FROM creatives") == 2  # the world's and the upload


async def test_marketplace_listing_and_notifications(db, settings):
    w = await world(db)
    async with portal_client(settings) as ops, portal_client(settings) as other, portal_client(settings) as alice:
        csrf = await login(ops, "ops@shop-m.example")
        other_csrf = await login(other, "ops@bbb.example")
        await login(alice, "alice@p.example")
        assert "Shop M" not in (await alice.get("/offers")).text.split('id="marketplace"')[1]  # not listed yet
        listing = {"action": "listing", "merchant_id": str(w.merchant_id), "listed": "true"}
        refused = await other.post("/admin/partners", data={**listing, "csrf_token": other_csrf})
        assert refused.status_code == 404  # another merchant's operator cannot list M
        assert await db.fetchval("SELECT listed FROM merchants WHERE id = $1", w.merchant_id) is False
        listed = await ops.post("/admin/partners", data={**listing, "csrf_token": csrf})
        assert listed.status_code == 303 and await db.fetchval(
            "SELECT listed FROM merchants WHERE id = $1", w.merchant_id
        )
        market = (await alice.get("/offers")).text.split('id="marketplace"')[1]
        assert "Shop M" in market and "You are in" in market and "BBB_SECRET" not in market

        # A new offer open to the programme: each approved partner is told on the portal and by mail.
        made = await ops.post(
            "/admin/offers",
            data={
                "csrf_token": csrf,
                "name": "Spring sale",
                "destination_url": "https://shop.example/spring?c={click_id}",
                "m_cps": "true",
                "cps_percent": "6",
                "hold_days": "7",
                "window_days": "30",
            },
        )
        assert made.status_code == 303, made.text
        page = (await alice.get("/notifications")).text
        assert "New offer from Shop M: Spring sale." in page
        mails = await db.fetch("SELECT subject FROM outbox WHERE to_email = 'alice@p.example'")
        assert [m["subject"] for m in mails] == ["New offer from Shop M: Spring sale."]
        marked = await alice.post("/notifications", data={"csrf_token": token(page)})
        assert marked.status_code == 303
        assert (
            await db.fetchval(
                "SELECT count(*) FROM notifications WHERE read_at IS NULL AND partner_id = $1", w.a_partner
            )
            == 0
        )


async def test_report_csv_is_the_table_and_safe_in_a_spreadsheet(db, settings):
    w = await world(db)
    await db.execute("UPDATE partners SET name = '=HYPERLINK(\"https://evil.example\")' WHERE id = $1", w.b_partner)
    async with portal_client(settings) as ops:
        await login(ops, "ops@shop-m.example")
        page = await ops.get("/admin?range=7d")
        assert page.status_code == 200 and 'id="totals"' in page.text
        csv_text = (await ops.get("/admin?range=7d&format=csv")).text
        header, row = csv_text.splitlines()
        columns = "partner,offer,views,clicks,unique_clicks,bots,actions,currency,sales,sales_amount,"
        assert header == columns + "pending,approved,reversed,paid"
        # The name a partner typed goes out as text, not a formula; 7 clicks, as the table says.
        assert row.startswith('"\'=HYPERLINK(""https://evil.example"")') and ",7,0,0,0," in row
        bad = await ops.get("/admin?range=custom&from=2026-05-02&to=2026-05-01")
        assert bad.status_code == 200 and 'id="f-from-error"' in bad.text  # the range's refusal beside its field


def test_the_browser_walk_covers_every_page_in_the_route_table():
    """Every GET page of the portal is in the showcase walk (tests/browser/test_portal_pages.py and
    `python -m clickmint.screenshots` both take their pages from portal/showcase.py), so a new page is not forgotten."""
    from starlette.routing import Route

    from portal import loyalty_pages, showcase, site

    routes = [r for r in [*site.routes(), *loyalty_pages.routes()] if isinstance(r, Route) and "GET" in r.methods]
    assert len(routes) > 30
    listed = showcase.PUBLIC_PAGES + showcase.PARTNER_PAGES + showcase.OPERATOR_PAGES
    walked = [re.sub(r"\{[a-z_]+\}", "1", p.split("?")[0]) for p in listed]
    missing = sorted(
        r.path
        for r in routes
        if r.path not in showcase.NOT_PAGES and not any(r.path_regex.match(path) for path in walked)
    )
    assert not missing, f"pages not in the browser walk (add them to portal/showcase.py): {missing}"
    stale = sorted(p for p in walked if not any(r.path_regex.match(p) for r in routes))
    assert not stale, f"walked pages that are not routes any more: {stale}"
