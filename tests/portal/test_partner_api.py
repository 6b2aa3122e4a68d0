"""What a partner sees through the API: live stats from the rollups, its orders and customers, the
offers open to it, links and the link builder, markup prices and their feed, statements and postbacks."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac

import asyncpg
import pytest

from billing.settle import settle
from billing.statements import month_bounds
from clickmint.embedded import pick_port
from kernel.egress import EgressPolicy
from kernel.redis.pyclient import Lazy
from kernel.settings import Settings
from portal import postbacks
from tests.factories import programme
from tests.helpers import click_id_of, drain, postback, tracker_client
from tests.portal.kit import add_user, csrf_headers, login, portal_client, world


async def test_a_click_and_a_sale_show_in_stats_orders_and_customers(settings: Settings, db: asyncpg.Connection):
    prog = await programme(db, fee_plan={"cps_percent": "10", "cpa": {"signup": 250}})
    await add_user(db, "p@p.example", "partner", partner_id=prog.partner_id, merchant_id=prog.merchant_id)
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with portal_client(settings) as portal:
        await login(portal, "p@p.example")
        empty = (await portal.get("/api/v1/partner/stats?range=today")).json()
        assert empty["money"] == [] and empty["totals"]["clicks"] == 0
        async with tracker_client(settings) as (_app, tracker):
            cid = click_id_of(await tracker.get(f"/c/{prog.code}?sub1=blog", headers={"user-agent": "Mozilla/5.0"}))
            await tracker.get(
                f"/c/{prog.code}", headers={"user-agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
            )
            base = {"offer_id": prog.offer_id, "click_id": cid}
            await postback(tracker, secret, {**base, "action": "signup", "customer_id": "cust-9"})
            await postback(tracker, secret, {**base, "order_id": "ORD-1", "amount": "129.99", "customer_id": "cust-9"})
        await drain(settings, 4, db)
        stats = (await portal.get("/api/v1/partner/stats?range=today&group=sub1")).json()
        totals = stats["totals"]  # the bot's click counts under bots, not clicks
        assert (totals["clicks"], totals["unique_clicks"], totals["bots"], totals["actions"]) == (1, 1, 1, 2)
        (usd,) = stats["money"]
        assert (usd["currency"], usd["sales"], usd["sales_amount"], usd["commission_pending"]) == (
            "USD",
            1,
            "129.99",
            "15.50",
        )
        assert {r["key"] for r in stats["rows"]} >= {"blog"}
        assert stats["bots_by_reason"][0]["events"] == 1
        assert {a["action"] for a in stats["actions_by_name"]} >= {"signup"}
        orders = (await portal.get("/api/v1/partner/orders")).json()["orders"]
        sale = next(o for o in orders if o["order_id"] == "ORD-1")
        assert (sale["status"], sale["amount"], sale["currency"], sale["commission"]) == (
            "pending",
            "129.99",
            "USD",
            "13.00 USD",
        )
        # The signup and the sale both count for the customer they brought.
        customers = (await portal.get("/api/v1/partner/customers")).json()["customers"]
        assert len(customers) == 1 and customers[0]["orders"] == 2 and customers[0]["total"] == "129.99"
        page = await portal.get("/dashboard?range=today")
        assert page.status_code == 200 and 'data-metric="clicks">1<' in page.text


async def test_offers_open_to_the_partner_include_partner_only_upcoming_sales(db, settings):
    w = await world(db)
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    upcoming = await db.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, visibility, starts_at)
           VALUES ($1, 'Black Friday preview', 'https://shop.example/bf', 'USD', 'partners', $2) RETURNING id""",
        w.merchant_id,
        soon,
    )
    ended = await db.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, ends_at)
           VALUES ($1, 'Over', 'https://shop.example/old', 'USD', now() - interval '1 day') RETURNING id""",
        w.merchant_id,
    )
    await db.execute(
        """UPDATE offers SET fee_plan = '{"cps_percent": "8", "cpc": 5, "cpm": 150}' WHERE id = $1""",
        w.ids["public_offer"],
    )
    await db.execute(
        """INSERT INTO offer_partner_plans (offer_id, partner_id, fee_plan)
           VALUES ($1, $2, '{"cps_percent": "12", "cpm": null}')""",
        w.ids["public_offer"],
        w.a_partner,
    )
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
        offers = {o["id"]: o for o in (await client.get("/api/v1/partner/offers")).json()["offers"]}
        assert set(offers) == {w.ids["public_offer"], upcoming}
        assert offers[upcoming]["upcoming"] is True and offers[upcoming]["visibility"] == "partners"
        # Its own terms, as billing pays them: the override's keys replace the offer's, a null removes one.
        assert offers[w.ids["public_offer"]]["fee_plan"] == {"cps_percent": "12", "cpc": 5}
        assert (await client.get(f"/api/v1/partner/offers/{ended}")).status_code == 404
        await db.execute("UPDATE partner_programmes SET status = 'suspended' WHERE partner_id = $1", w.a_partner)
        assert (await client.get("/api/v1/partner/offers")).json()["offers"] == []


async def test_links_snippets_and_the_link_builder(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        made = await client.post(
            "/api/v1/partner/links", json={"offer_id": w.ids["public_offer"]}, headers=csrf_headers(csrf)
        )
        assert made.status_code == 201
        link = made.json()
        assert link["click_url"] == f"https://t.example/c/{link['code']}"
        assert f'href="https://t.example/c/{link["code"]}"' in link["snippets"]["text_link"]
        built = await client.get(
            f"/api/v1/partner/links/{link['id']}/build",
            params={"sub1": "news letter", "sub2": "é", "url": "https://shop.example/p/42?x=1"},
        )
        assert built.status_code == 200
        assert built.json()["url"] == (
            f"https://t.example/c/{link['code']}?sub1=news+letter&sub2=%C3%A9&url=https%3A%2F%2Fshop.example%2Fp%2F42%3Fx%3D1"
        )
        foreign = await client.get(f"/api/v1/partner/links/{link['id']}/build", params={"url": "https://evil.example/"})
        assert foreign.status_code == 400 and "allowed" in foreign.json()["detail"]
        bad = await client.post("/api/v1/partner/links", json={"offer_id": "x"}, headers=csrf_headers(csrf))
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_field"
    assert await db.fetchval("SELECT count(*) FROM links WHERE partner_id = $1", w.a_partner) == 2


async def test_markup_prices_are_validated_versioned_and_fed(db, settings):
    w = await world(db)
    await db.execute("INSERT INTO products (merchant_id, sku, name) VALUES ($1, 'MUG-1', 'Mug')", w.merchant_id)
    await db.execute(
        """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency)
           VALUES ($1, 'MUG-1', 'wholesale', 1000, 'USD')""",
        w.merchant_id,
    )
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        h = csrf_headers(csrf)
        below = await client.post(
            "/api/v1/partner/prices", json={"merchant_id": w.merchant_id, "sku": "MUG-1", "retail": "9.99"}, headers=h
        )
        assert below.status_code == 400 and below.json()["error"] == "below_wholesale"
        for bad in ("12.345", "-1", "1e3", "NaN", "12,50"):
            r = await client.post(
                "/api/v1/partner/prices", json={"merchant_id": w.merchant_id, "sku": "MUG-1", "retail": bad}, headers=h
            )
            assert r.status_code == 400, bad
        first = await client.post(
            "/api/v1/partner/prices", json={"merchant_id": w.merchant_id, "sku": "MUG-1", "retail": "14.00"}, headers=h
        )
        assert first.status_code == 201 and first.json()["retail"] == "14.00"
        second = await client.post(
            "/api/v1/partner/prices", json={"merchant_id": w.merchant_id, "sku": "MUG-1", "retail": "15.50"}, headers=h
        )
        assert second.json()["retail"] == "15.50" and second.json()["wholesale"] == "10.00"
        listed = (await client.get("/api/v1/partner/prices")).json()
        feed_url = next(f["url"] for f in listed["feeds"] if f["merchant_id"] == w.merchant_id)
        client.cookies.clear()
        feed = await client.get(feed_url)
        assert feed.status_code == 200
        assert feed.json()["items"] == [
            {
                "sku": "MUG-1",
                "name": "Mug",
                "price": "15.50",
                "currency": "USD",
                "valid_from": feed.json()["items"][0]["valid_from"],
            }
        ]
    versions = await db.fetch(
        "SELECT amount_minor FROM prices WHERE kind = 'retail' AND partner_id = $1 ORDER BY id", w.a_partner
    )
    assert [v["amount_minor"] for v in versions] == [1400, 1550]


async def test_statements_list_view_and_download_the_same_bytes_twice(settings, db):
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await db.execute("UPDATE offers SET hold_days = 0")
    await add_user(db, "p@p.example", "partner", partner_id=prog.partner_id, merchant_id=prog.merchant_id)
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, tracker):
        cid = click_id_of(await tracker.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"}))
        await postback(
            tracker, secret, {"offer_id": prog.offer_id, "click_id": cid, "order_id": "S1", "amount": "50.00"}
        )
    await drain(settings, 2, db)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    period = f"{now:%Y-%m}"
    await settle(db, period, now=now, close=False)
    closing = dt.datetime.combine(month_bounds(period)[1], dt.time(1), dt.UTC)
    await settle(db, period, now=closing)
    async with portal_client(settings) as client:
        await login(client, "p@p.example")
        (statement,) = (await client.get("/api/v1/partner/statements")).json()["statements"]
        assert statement["status"] == "closed" and statement["total"] == "5.00"
        detail = (await client.get(f"/api/v1/partner/statements/{statement['id']}")).json()
        assert [(line["kind"], line["amount"]) for line in detail["lines"]] == [("cps", "5.00")]
        csv1 = await client.get(f"/api/v1/partner/statements/{statement['id']}/csv")
        csv2 = await client.get(f"/api/v1/partner/statements/{statement['id']}/csv")
        assert csv1.status_code == 200 and csv1.content == csv2.content
        assert csv1.headers["content-type"].startswith("text/csv")
        assert "attachment" in csv1.headers["content-disposition"]
        pdf = await client.get(f"/api/v1/partner/statements/{statement['id']}/pdf")
        assert pdf.content.startswith(b"%PDF")
    pinned = await db.fetchrow("SELECT csv_sha256, pdf_sha256 FROM statements")
    assert pinned["csv_sha256"] == hashlib.sha256(csv1.content).hexdigest()
    assert pinned["pdf_sha256"] == hashlib.sha256(pdf.content).hexdigest()


async def test_outbound_postbacks_are_signed_retried_and_logged(db, settings):
    w = await world(db)
    received: list[tuple[str, dict[str, str]]] = []
    answers = iter([500, 200])

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        line, *rest = head.split("\r\n")
        headers = dict(h.split(": ", 1) for h in rest if ": " in h)
        received.append((line.split()[1], {k.lower(): v for k, v in headers.items()}))
        status = next(answers)
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # Loopback is no target for outbound postbacks; the tests' switch allows it (and any port) explicitly.
    policy = EgressPolicy(ports=None, allow_loopback=True)
    env = {"CLICKMINT_EGRESS_ALLOW_LOOPBACK": "true", "CLICKMINT_EGRESS_PORTS": "any"}
    async with portal_client(settings, **env) as client:
        csrf = await login(client, "alice@p.example")
        made = await client.post(
            "/api/v1/partner/postbacks",
            json={"url": f"http://127.0.0.1:{port}/pb?order={{order_id}}&amount={{amount}}&s={{status}}"},
            headers=csrf_headers(csrf),
        )
        assert made.status_code == 201
        pb = made.json()
        await db.execute(
            """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                        currency, status, hold_until)
               VALUES (gen_random_uuid(), now(), 'purchase', $1, $2, $3, 'A&B 1', 2599, 'USD', 'pending', now())""",
            w.merchant_id,
            w.ids["public_offer"],
            w.a_partner,
        )
        assert await postbacks.enqueue(db) == 1
        assert await postbacks.enqueue(db) == 0  # once per conversion
        assert await postbacks.deliver_due(db, policy) == 1
        row = await db.fetchrow(
            "SELECT status, attempts, last_status, next_attempt_at > now() AS later FROM postback_deliveries"
        )
        assert (row["status"], row["attempts"], row["last_status"], row["later"]) == ("pending", 1, 500, True)
        failed = (await client.get(f"/api/v1/partner/postbacks/{pb['id']}/deliveries")).json()["deliveries"]
        assert (failed[0]["status"], failed[0]["result"]) == ("pending", "HTTP 5xx")
        assert await postbacks.deliver_due(db, policy) == 0  # not due yet: backoff
        await db.execute("UPDATE postback_deliveries SET next_attempt_at = now()")
        assert await postbacks.deliver_due(db, policy) == 1
        log = (await client.get(f"/api/v1/partner/postbacks/{pb['id']}/deliveries")).json()["deliveries"]
        assert (log[0]["status"], log[0]["attempts"], log[0]["result"]) == ("delivered", 2, "delivered")
    server.close()
    await server.wait_closed()
    path, headers = received[-1]
    assert path == "/pb?order=A%26B%201&amount=25.99&s=pending"
    url = f"http://127.0.0.1:{port}{path}"
    expected = hmac.new(pb["secret"].encode(), f"{headers['x-clickmint-timestamp']}.{url}".encode(), hashlib.sha256)
    assert headers["x-clickmint-signature"] == expected.hexdigest()


async def test_the_commission_macro_is_in_the_commissions_own_currency(db):
    """{commission} was formatted in the offer's currency: a 500 JPY commission on a sale in yen went out as
    "5.00". It is the commission in its own currency; lines in two currencies (a hybrid's fixed part and its
    percentage of a sale in another currency) have no one figure, and the macro is left empty."""
    w = await world(db)
    await db.execute(
        """INSERT INTO partner_postbacks (partner_id, url, secret, events)
           VALUES ($1, 'https://a.example/pb?o={order_id}&c={commission}&ccy={currency}', 's', '{action,purchase}')""",
        w.a_partner,
    )
    for order, amount, currency, lines in (
        ("yen", 5000, "JPY", [("cps", 500, "JPY")]),
        ("usd", 2599, "USD", [("cps", 260, "USD")]),
        ("signup", None, None, [("cpa", 250, "USD")]),
        ("hybrid", 5000, "JPY", [("cpa", 250, "USD"), ("cps", 500, "JPY")]),
        ("nothing", 100, "USD", []),
    ):
        event_id = await db.fetchval(
            """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                        currency, status, hold_until)
               VALUES (gen_random_uuid(), now(), $1, $2, $3, $4, $5, $6, $7, 'pending', now()) RETURNING event_id""",
            "action" if amount is None else "purchase",
            w.merchant_id,
            w.ids["public_offer"],
            w.a_partner,
            order,
            amount,
            currency,
        )
        for kind, minor, ccy in lines:
            await db.execute(
                "INSERT INTO commissions (event_id, kind, amount_minor, currency, basis) VALUES ($1, $2, $3, $4, '')",
                event_id,
                kind,
                minor,
                ccy,
            )
    assert await postbacks.enqueue(db) == 5
    urls = {
        r["url"].split("o=")[1].split("&")[0]: r["url"] for r in await db.fetch("SELECT url FROM postback_deliveries")
    }
    assert urls["yen"].endswith("&c=500&ccy=JPY")
    assert urls["usd"].endswith("&c=2.60&ccy=USD")
    assert urls["signup"].endswith("&c=2.50&ccy=USD")
    assert urls["hybrid"].endswith("&c=&ccy=JPY")
    assert urls["nothing"].endswith("&c=0.00&ccy=USD")


async def test_a_closed_statement_reexports_the_same_bytes_after_renames(settings, db):
    """Found by fuzzing the operator API: renaming the offer, merchant or partner changed a closed
    statement's bytes. The names, addresses and payment terms are fixed at close now."""
    w = await world(db)
    from billing import statements

    async with portal_client(settings) as client:
        h = csrf_headers(await login(client, "ops@shop-m.example"))
        terms = {"address": "1 Market Street\nSpringfield", "payment_terms": "Net 30, by bank transfer."}
        changed = await client.patch(f"/api/v1/admin/merchants/{w.merchant_id}", json=terms, headers=h)
        assert changed.status_code == 200 and changed.json()["address"] == "1 Market Street\nSpringfield"
    await db.execute("UPDATE partners SET address = 'Flat 2, High Road' WHERE id = $1", w.b_partner)
    await statements.close(db, w.ids["b_statement"], dt.datetime.now(dt.UTC))
    before = await statements.export(db, w.ids["b_statement"], "csv")
    pdf_before = await statements.export(db, w.ids["b_statement"], "pdf")
    assert b"Springfield" in before and b"Net 30, by bank transfer." in before and b"Flat 2, High Road" in before
    await db.execute("UPDATE offers SET name = 'Renamed offer'")
    await db.execute("UPDATE merchants SET name = 'Renamed merchant', address = 'Moved', payment_terms = 'Net 60'")
    await db.execute("UPDATE partners SET name = 'Renamed partner', address = 'Moved too'")
    assert await statements.export(db, w.ids["b_statement"], "csv") == before
    assert await statements.export(db, w.ids["b_statement"], "pdf") == pdf_before
    assert b"BBB_SECRET private" in before
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("UPDATE statements SET names = '{}' WHERE id = $1", w.ids["b_statement"])


async def test_offers_show_the_partners_own_cap_usage_and_whether_offer_caps_are_reached(
    settings: Settings, db: asyncpg.Connection
):
    caps = {"clicks": {"daily": 3}, "per_partner": {"clicks": {"daily": 2}, "payout": {"lifetime": 5000}}}
    prog = await programme(db, caps=caps, fallback_url="https://fallback.example.org/")
    other = await db.fetchval("INSERT INTO partners (name, email) VALUES ('Other', 'o@p.example') RETURNING id")
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
        other,
        prog.merchant_id,
    )
    await db.execute(
        "INSERT INTO links (code, partner_id, offer_id) VALUES ('other-link', $1, $2)", other, prog.offer_id
    )
    await add_user(db, "capped@p.example", "partner", partner_id=prog.partner_id, merchant_id=prog.merchant_id)
    async with tracker_client(settings) as (_app, tracker):
        for i, code in enumerate([prog.code] * 3 + ["other-link"]):  # two of ours count, the third is over our cap
            await tracker.get(f"/c/{code}", headers={"user-agent": f"Mozilla/5.0 visitor-{i}"})
    async with portal_client(settings) as portal:
        await login(portal, "capped@p.example")
        listed = (await portal.get("/api/v1/partner/offers")).json()["offers"]
        one = (await portal.get(f"/api/v1/partner/offers/{prog.offer_id}")).json()
        page = (await portal.get("/offers")).text
        portal.app.state.portal.redis = Lazy(f"redis://127.0.0.1:{pick_port(0)}", "no")  # the counters out of reach
        blind = await portal.get("/api/v1/partner/offers")
    [offer] = [o for o in listed if o["id"] == prog.offer_id]
    assert (
        offer["caps"]
        == one["caps"]
        == [
            {"metric": "clicks", "period": "daily", "scope": "offer", "limit": 3, "reached": True},
            {"metric": "clicks", "period": "daily", "scope": "partner", "limit": 2, "used": 2, "remaining": 0},
            {"metric": "payout", "period": "lifetime", "scope": "partner", "limit": 5000, "used": 0, "remaining": 5000},
        ]
    )
    assert "Your daily cap: 2 clicks of 2 clicks used today (UTC)" in page
    assert "Your lifetime cap: 0.00 USD of 50.00 USD used" in page
    assert 'Offer daily cap: 3 clicks <span class="tag">reached until midnight UTC' in page
    assert blind.status_code == 200 and [o["caps"] for o in blind.json()["offers"]] == [None]
