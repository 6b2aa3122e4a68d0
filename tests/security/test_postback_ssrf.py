"""Server-side request forgery through a partner's postback URL, tried as it was done: a partner signs in to the
real portal and points its postback at the cloud metadata address, private and loopback services, the tracker's
own pixel, names that resolve inside; the portal's own delivery loop then calls what was saved. Every such URL
is refused when saved and again when delivered, the partner sees only a coarse result (never error text or an
exact status), and one hanging endpoint delays nobody else's deliveries."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import orjson
import pytest

from kernel.settings import Settings
from kernel.signature import sign
from tests.factories import programme
from tests.portal.kit import add_user, world
from tests.security.live import Target, live, until

LOOPBACK_ALLOWED = {"CLICKMINT_EGRESS_ALLOW_LOOPBACK": "true", "CLICKMINT_EGRESS_PORTS": "any"}
DELIVERING = {"CLICKMINT_DELIVER_POSTBACKS": "true"}
RESULTS = {"delivered", "HTTP 3xx", "HTTP 4xx", "HTTP 5xx", "failed (timeout)", "failed (refused)",
           "failed (blocked by policy)", "pending"}  # fmt: skip


async def _partner(client: httpx.AsyncClient, base: str, email: str = "alice@p.example") -> str:
    response = await client.post(f"{base}/api/v1/auth/login", json={"email": email, "password": _PASSWORD})
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


_PASSWORD = "correct horse battery staple"


def _internal_urls(settings: Settings, portal_port: int, tracker_port: int) -> list[str]:
    redis_port = int((settings.redis_url or "redis://127.0.0.1:6379").rsplit(":", 1)[1].split("/")[0])
    pg_port = int((settings.database_url or "").split("@")[-1].split(":")[1].split("/")[0])
    return [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://10.0.0.1/",
        "http://192.168.1.1/admin",
        "http://172.16.0.1/",
        "http://100.64.0.1/",  # carrier-grade NAT
        f"http://127.0.0.1:{redis_port}/",
        f"http://127.0.0.1:{pg_port}/",
        f"http://127.0.0.1:{portal_port}/healthz",
        f"http://127.0.0.1:{tracker_port}/metrics",
        f"http://localhost:{portal_port}/",
        f"http://0.0.0.0:{portal_port}/",
        "http://0/",
        "http://2130706433/",  # 127.0.0.1 as one number
        "http://0177.0.0.1/",  # octal
        "http://0x7f.1/",
        f"http://[::1]:{portal_port}/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "https://user:secret@partner.example/pb",
        "http://partner.example@127.0.0.1/",
        "ftp://partner.example/pb",
        "http://partner.example:25/pb",  # a port the operator did not allow
        "http://{sub1}.partner.example/pb",  # a macro in the host
    ]


async def test_internal_addresses_are_refused_when_saved(settings: Settings, db: asyncpg.Connection) -> None:
    await world(db)
    async with live(settings, ingest=False) as lv, lv.client() as client:
        csrf = await _partner(client, lv.portal_url)
        urls = _internal_urls(settings, lv.core.portal_port, lv.core.tracker_port)
        for url in urls:
            response = await client.post(
                f"{lv.portal_url}/api/v1/partner/postbacks", json={"url": url}, headers={"x-csrf-token": csrf}
            )
            assert response.status_code == 400, (url, response.status_code, response.text)
            body = response.json()
            assert body["error"] in ("url_not_allowed", "invalid_field"), (url, body)
            assert "Errno" not in body["detail"], body
        # The page form is refused the same way.
        page = await client.post(f"{lv.portal_url}/postbacks", data={"url": urls[0], "csrf_token": csrf})
        assert page.status_code == 400
    assert await db.fetchval("SELECT count(*) FROM partner_postbacks WHERE partner_id = (SELECT id FROM partners "
                             "WHERE email = 'alice@p.example')") == 0  # fmt: skip


async def _conversion(db: asyncpg.Connection, merchant: int, offer: int, partner: int, order: str) -> None:
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                    currency, status, hold_until)
           VALUES (gen_random_uuid(), now(), 'purchase', $1, $2, $3, $4, 2599, 'USD', 'pending', now())""",
        merchant,
        offer,
        partner,
        order,
    )


async def _attempted(db: asyncpg.Connection, postback_id: int) -> bool:
    return bool(
        await db.fetchval(
            "SELECT count(*) FROM postback_deliveries WHERE postback_id = $1 AND attempts > 0", postback_id
        )
    )


async def test_a_url_saved_before_is_checked_again_at_delivery(settings: Settings, db: asyncpg.Connection) -> None:
    """An internal URL that got in (saved under an older policy, or its name now resolves inside) is never called:
    the delivery is refused by the policy and the partner sees only that, no error text, no status code."""
    w = await world(db)
    async with Target() as internal, live(settings, ingest=False, portal_env=DELIVERING) as lv:
        credentials = internal.url.replace("http://", "http://admin:hunter2@")
        ids = []
        for url in (f"{internal.url}/admin?x={{order_id}}", f"{credentials}/pb", f"http://localhost:{internal.port}/"):
            ids.append(
                await db.fetchval(
                    """INSERT INTO partner_postbacks (partner_id, url, secret, events)
                       VALUES ($1, $2, 's', '{purchase}') RETURNING id""",
                    w.a_partner,
                    url,
                )
            )
        await _conversion(db, w.merchant_id, w.ids["public_offer"], w.a_partner, "order-1")
        for postback_id in ids:
            await until(lambda pid=postback_id: _attempted(db, pid), "the delivery loop's attempt")
        async with lv.client() as client:
            await _partner(client, lv.portal_url)
            for postback_id in ids:
                log = (await client.get(f"{lv.portal_url}/api/v1/partner/postbacks/{postback_id}/deliveries")).json()
                [delivery] = log["deliveries"]
                assert delivery["result"] == "failed (blocked by policy)", delivery
                assert set(delivery) >= {"status", "attempts", "result"}
                assert "last_error" not in delivery and "last_status" not in delivery
            page = (await client.get(f"{lv.portal_url}/postbacks")).text
            assert "failed (blocked by policy)" in page and "Errno" not in page
    assert internal.seen == []


async def test_partners_see_no_error_text_or_status_code(settings: Settings, db: asyncpg.Connection) -> None:
    """With loopback allowed (the tests' switch), a refused connection and an internal service's answer
    show only as coarse results: the delivery log is no port scanner."""
    w = await world(db)
    env = DELIVERING | LOOPBACK_ALLOWED
    async with Target(status=401) as service, live(settings, ingest=False, portal_env=env) as lv:
        closed = Target()
        async with closed:
            closed_url = closed.url
        async with lv.client() as client:
            csrf = await _partner(client, lv.portal_url)
            made = []
            for url in (f"{service.url}/x", f"{closed_url}/x"):
                response = await client.post(
                    f"{lv.portal_url}/api/v1/partner/postbacks", json={"url": url}, headers={"x-csrf-token": csrf}
                )
                assert response.status_code == 201, response.text
                made.append(response.json()["id"])
            await _conversion(db, w.merchant_id, w.ids["public_offer"], w.a_partner, "order-2")
            for postback_id in made:
                await until(lambda pid=postback_id: _attempted(db, pid), "the delivery loop's attempt")
            results = []
            for postback_id in made:
                log = await client.get(f"{lv.portal_url}/api/v1/partner/postbacks/{postback_id}/deliveries")
                assert "Errno" not in log.text and "refused" not in log.text.replace("failed (refused)", "")
                results.append(log.json()["deliveries"][0]["result"])
    assert results == ["HTTP 4xx", "failed (refused)"]
    assert all(r in RESULTS for r in results)


async def test_a_postback_to_the_tracker_cannot_loop(settings: Settings, db: asyncpg.Connection) -> None:
    """A partner's postback pointing at the tracker's own pixel made 1 conversion become 7 in 16 s. Refused
    when saved; one smuggled in is refused at delivery, and the conversions stay where they were."""
    prog = await programme(db, window_s=3600, fee_plan={"cps_percent": "10"})
    await add_user(db, "looper@p.example", "partner", partner_id=prog.partner_id, merchant_id=prog.merchant_id)
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with live(settings, portal_env=DELIVERING | LOOPBACK_ALLOWED) as lv, lv.client() as client:
        csrf = await _partner(client, lv.portal_url, "looper@p.example")
        loops = [
            f"{lv.tracker_url}/a/{prog.offer_id}?click_id={{click_id}}&action=loop",
            f"http://localhost:{lv.core.tracker_port}/a/{prog.offer_id}?click_id={{click_id}}",
            f"{lv.portal_url}/api/v1/openapi.json",
        ]
        for url in loops:
            response = await client.post(
                f"{lv.portal_url}/api/v1/partner/postbacks", json={"url": url}, headers={"x-csrf-token": csrf}
            )
            assert response.status_code == 400 and response.json()["error"] == "url_not_allowed", (url, response.text)
        smuggled = await db.fetchval(
            """INSERT INTO partner_postbacks (partner_id, url, secret, events)
               VALUES ($1, $2, 's', '{action,purchase}') RETURNING id""",
            prog.partner_id,
            loops[0],
        )
        click = await client.get(f"{lv.tracker_url}/c/{prog.code}", follow_redirects=False)
        click_id = click.headers["location"].split("cid=")[1].split("&")[0]
        body = orjson.dumps({"offer_id": prog.offer_id, "click_id": click_id, "order_id": "o-1", "amount": "10.00"})
        ts = int(time.time())
        sale = await client.post(
            f"{lv.tracker_url}/postback",
            content=body,
            headers={
                "content-type": "application/json",
                "x-clickmint-timestamp": str(ts),
                "x-clickmint-signature": sign(secret, ts, body),
            },
        )
        assert sale.status_code == 200, sale.text
        await until(lambda: db.fetchval("SELECT count(*) FROM conversions"), "the sale in billing")
        await until(lambda: _attempted(db, smuggled), "the delivery loop's attempt")
        await asyncio.sleep(0.5)  # let anything the delivery caused reach ingest
    assert await db.fetchval("SELECT count(*) FROM conversions") == 1
    assert await db.fetchval("SELECT count(*) FROM events WHERE type = 'action'") == 0


async def test_a_hanging_endpoint_delays_nobody_else(settings: Settings, db: asyncpg.Connection) -> None:
    """Deliveries used to run one at a time inside a database transaction with 10 s timeouts: one partner's
    hanging endpoint held everyone's. Now partner B's delivery is made while A's request is still open,
    and no database connection waits in a transaction meanwhile."""
    w = await world(db)
    async with (
        Target(hold=True) as slow,
        Target() as fast,
        live(settings, ingest=False, portal_env=DELIVERING | LOOPBACK_ALLOWED),
    ):
        for partner, target in ((w.a_partner, slow), (w.b_partner, fast)):
            await db.execute(
                "INSERT INTO partner_postbacks (partner_id, url, secret, events) VALUES ($1, $2, 's', '{purchase}')",
                partner,
                f"{target.url}/pb?o={{order_id}}",
            )
        await _conversion(db, w.merchant_id, w.ids["public_offer"], w.a_partner, "slow-1")
        await until(lambda: slow.arrived.is_set(), "the slow endpoint's request")
        await _conversion(db, w.merchant_id, w.ids["public_offer"], w.b_partner, "fast-1")
        await until(lambda: fast.arrived.is_set(), "the fast endpoint's request")
        delivered = await until(
            lambda: db.fetchval("SELECT count(*) FROM postback_deliveries WHERE status = 'delivered'"),
            "the fast delivery to be recorded",
        )
        assert slow.open == 1, "the hanging request must still be open: B did not wait for A"
        waiting = await db.fetchval(
            """SELECT count(*) FROM pg_stat_activity
               WHERE datname = current_database() AND state LIKE 'idle in transaction%'"""
        )
        slow.release.set()
    assert delivered == 1
    assert waiting == 0


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_delivery_connects_to_the_checked_address_with_the_right_host(
    settings: Settings, db: asyncpg.Connection, scheme: str, tmp_path
) -> None:
    """Resolved once, checked, connected to by address: the Host header (and the TLS name) stay the URL's,
    never with credentials in them."""
    from tests.security.tls import certificate, tls_target

    w = await world(db)
    ca, cert, key = certificate(tmp_path, "localhost")
    env = DELIVERING | LOOPBACK_ALLOWED | {"CLICKMINT_EGRESS_CA_FILE": str(ca)}
    async with tls_target(cert, key, scheme == "https") as target, live(settings, ingest=False, portal_env=env) as lv:
        async with lv.client() as client:
            csrf = await _partner(client, lv.portal_url)
            url = f"{scheme}://localhost:{target.port}/pb?o={{order_id}}"
            made = await client.post(
                f"{lv.portal_url}/api/v1/partner/postbacks", json={"url": url}, headers={"x-csrf-token": csrf}
            )
            assert made.status_code == 201, made.text
        await _conversion(db, w.merchant_id, w.ids["public_offer"], w.a_partner, "host-1")
        await until(lambda: target.arrived.is_set(), "the delivery")
        await until(
            lambda: db.fetchval("SELECT count(*) FROM postback_deliveries WHERE status = 'delivered'"), "delivered"
        )
    [seen] = target.seen
    assert seen.headers["host"] == f"localhost:{target.port}"
    assert seen.line.startswith("GET /pb?o=host-1 ")
