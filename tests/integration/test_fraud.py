"""Fraud rules in ingest, each flagging and not flagging, on real servers; a held conversion is never paid until
approved, and an unresolved hold expires by its offer's policy (billing/fraud.py, billing/review.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from billing import figures, review
from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings
from billing.settle import settle
from kernel.env import Env
from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.helpers import PER_ADDRESS, click_id_of, postback, tracker_client, visitor


async def drain(settings: Settings, until: int, conn: asyncpg.Connection, asn_db: str | None = None) -> None:
    """Ingest (with the ASN database, when given) until `until` events are stored."""
    ingest = Ingest(BillingSettings.from_env(Env({}), core=settings), derive=Deriver(asn_db))
    task = asyncio.create_task(ingest.run())
    try:
        async with asyncio.timeout(10):
            while await conn.fetchval("SELECT count(*) FROM events") < until:
                await asyncio.sleep(0.02)
    finally:
        ingest.stop()
        await task


async def _offer(db: asyncpg.Connection, rules: dict[str, Any], **kw: Any) -> tuple[Programme, str]:
    prog = await programme(db, fee_plan={"cps_percent": "10"}, **kw)
    secret = await db.fetchval(
        "UPDATE offers SET fraud_rules = $2 WHERE id = $1 RETURNING postback_secret",
        prog.offer_id,
        orjson.dumps(rules).decode(),
    )
    return prog, secret


async def _second_partner(db: asyncpg.Connection, prog: Programme) -> tuple[int, str]:
    partner = await db.fetchval("INSERT INTO partners (name, email) VALUES ('B', 'b@partners.test') RETURNING id")
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
        partner,
        prog.merchant_id,
    )
    code = f"b-link-{partner}"
    await db.execute("INSERT INTO links (code, partner_id, offer_id) VALUES ($1, $2, $3)", code, partner, prog.offer_id)
    return partner, code


async def _states(db: asyncpg.Connection) -> dict[str, tuple[str, str | None]]:
    rows = await db.fetch("SELECT order_id, status, held_reason FROM conversions")
    return {r["order_id"]: (r["status"], r["held_reason"]) for r in rows}


def _sale(prog: Programme, order: str, click: str, **extra: Any) -> dict[str, Any]:
    return {"offer_id": prog.offer_id, "click_id": click, "order_id": order, "amount": "100.00", **extra}


async def test_too_soon_flags_a_quick_conversion_not_a_later_one(settings: Settings, db: asyncpg.Connection) -> None:
    prog, secret = await _offer(db, {"too_soon_seconds": 30})
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        quick = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        slow = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(2)))
        await drain(settings, 2, db)
        # The second click happened a minute ago: moved back in time where it is stored.
        await db.execute("UPDATE events SET ts = ts - interval '60 seconds' WHERE click_id = $1", slow)
        assert (await postback(client, secret, _sale(prog, "quick", quick))).status_code == 200
        assert (await postback(client, secret, _sale(prog, "slow", slow))).status_code == 200
    await drain(settings, 4, db)
    assert await _states(db) == {"quick": ("held", "too_soon"), "slow": ("pending", None)}
    # A rule never costs the click: both are counted.
    assert await db.fetchval("SELECT sum(unique_clicks) FROM rollups") == 2


async def test_self_referral_by_customer_id_or_email_hash(settings: Settings, db: asyncpg.Connection) -> None:
    prog, secret = await _offer(db, {}, email="Anna@Partners.Example")  # the rule is on by default
    await db.execute("UPDATE partner_programmes SET customer_ref = 'cust-anna' WHERE partner_id = $1", prog.partner_id)
    own_hash = hashlib.sha256(b"anna@partners.example").hexdigest()
    other_hash = hashlib.sha256(b"someone@else.example").hexdigest()
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        click = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        sent = [
            _sale(prog, "by-id", click, customer_id="cust-anna"),
            _sale(prog, "by-mail", click, customer_email_sha256=own_hash.upper()),
            _sale(prog, "stranger", click, customer_id="cust-zed", customer_email_sha256=other_hash),
        ]
        for fields in sent:
            assert (await postback(client, secret, fields)).status_code == 200
        bad = await postback(client, secret, _sale(prog, "bad", click, customer_email_sha256="not-a-hash"))
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_customer_email_sha256")
    await drain(settings, 4, db)
    assert await _states(db) == {
        "by-id": ("held", "self_referral"),
        "by-mail": ("held", "self_referral"),
        "stranger": ("pending", None),
    }
    raw = await db.fetchval("SELECT payload::text FROM events WHERE order_id = 'by-mail'")
    assert own_hash in raw  # in the event (stream contract) ...
    columns = await db.fetch("SELECT column_name FROM information_schema.columns WHERE table_name = 'conversions'")
    assert not [c for c in columns if "email" in c["column_name"]]  # ... but never a column of the conversion


async def test_one_customer_through_several_partners(settings: Settings, db: asyncpg.Connection) -> None:
    prog, secret = await _offer(db, {})
    _b, b_code = await _second_partner(db, prog)
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        a_click = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        b_click = click_id_of(await client.get(f"/c/{b_code}", headers=visitor(2)))
        for fields in (
            _sale(prog, "a1", a_click, customer_id="c1"),
            _sale(prog, "a2", a_click, customer_id="c2"),
            _sale(prog, "a3", a_click, customer_id="c2"),  # the same customer again through the same partner
        ):
            assert (await postback(client, secret, fields)).status_code == 200
        await drain(settings, 5, db)
        assert (await postback(client, secret, _sale(prog, "b1", b_click, customer_id="c1"))).status_code == 200
        assert (await postback(client, secret, _sale(prog, "b2", b_click, customer_id="c3"))).status_code == 200
    await drain(settings, 7, db)
    states = await _states(db)
    assert states == {
        "a1": ("pending", None),
        "a2": ("pending", None),
        "a3": ("pending", None),
        "b1": ("held", "multi_partner"),
        "b2": ("pending", None),
    }


async def test_multi_partner_can_be_turned_off(settings: Settings, db: asyncpg.Connection) -> None:
    prog, secret = await _offer(db, {"multi_partner": False})
    _b, b_code = await _second_partner(db, prog)
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        a_click = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        b_click = click_id_of(await client.get(f"/c/{b_code}", headers=visitor(2)))
        for fields in (_sale(prog, "a1", a_click, customer_id="c1"), _sale(prog, "b1", b_click, customer_id="c1")):
            assert (await postback(client, secret, fields)).status_code == 200
    await drain(settings, 4, db)
    assert await _states(db) == {"a1": ("pending", None), "b1": ("pending", None)}


@pytest.fixture
def asn_db(tmp_path: Path) -> str:
    """A MaxMind-format ASN database: visitor(1)'s /24 in AWS (16509), visitor(2)'s in a consumer ISP's."""
    path = tmp_path / "asn.mmdb"
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-ASN")
    writer.insert_network(
        IPSet(["198.18.0.0/24"]), {"autonomous_system_number": 16509, "autonomous_system_organization": "AMAZON-02"}
    )
    writer.insert_network(
        IPSet(["198.18.2.0/24"]), {"autonomous_system_number": 3320, "autonomous_system_organization": "DTAG"}
    )
    writer.insert_network(
        IPSet(["198.18.3.0/24"]), {"autonomous_system_number": 64500, "autonomous_system_organization": "OWN DC"}
    )
    writer.to_db_file(str(path))
    return str(path)


async def test_datacenter_networks_by_asn(settings: Settings, db: asyncpg.Connection, asn_db: str) -> None:
    prog, secret = await _offer(db, {"datacenter_asns": [64500]})
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        clicks = {
            name: click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(n)))
            for name, n in (("aws", 1), ("home", 2 << 8), ("listed", 3 << 8), ("unknown", 4 << 8))
        }
        for name, click in clicks.items():
            assert (await postback(client, secret, _sale(prog, name, click))).status_code == 200
    await drain(settings, 8, db, asn_db)
    assert await _states(db) == {
        "aws": ("held", "datacenter"),  # a built-in datacenter ASN
        "listed": ("held", "datacenter"),  # one the offer adds
        "home": ("pending", None),
        "unknown": ("pending", None),  # not in the database
    }


async def test_datacenter_rule_is_idle_without_an_asn_database(settings: Settings, db: asyncpg.Connection) -> None:
    prog, secret = await _offer(db, {})
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        click = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        assert (await postback(client, secret, _sale(prog, "aws", click))).status_code == 200
    await drain(settings, 2, db)
    assert await _states(db) == {"aws": ("pending", None)}


async def test_forbidden_referrer(settings: Settings, db: asyncpg.Connection) -> None:
    prog, secret = await _offer(db, {"forbidden_referrers": ["coupons.example"]})
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        referers = {
            "sub": "https://deals.Coupons.Example:8443/summer?x=1",
            "exact": "http://coupons.example/",
            "blog": "https://blog.example/coupons.example",
            "lookalike": "https://notcoupons.example/",
            "none": None,
        }
        clicks = {}
        for n, (name, referer) in enumerate(referers.items()):
            headers = {**visitor(n + 1), **({"referer": referer} if referer else {})}
            clicks[name] = click_id_of(await client.get(f"/c/{prog.code}", headers=headers))
        for name, click in clicks.items():
            assert (await postback(client, secret, _sale(prog, name, click))).status_code == 200
    await drain(settings, 10, db)
    assert await _states(db) == {
        "sub": ("held", "forbidden_referrer"),
        "exact": ("held", "forbidden_referrer"),
        "blog": ("pending", None),
        "lookalike": ("pending", None),
        "none": ("pending", None),
    }


async def _seed_rate(db: asyncpg.Connection, prog: Programme, partner: int, clicks: int, conversions: int) -> None:
    today = dt.datetime.now(dt.UTC).date()
    await db.execute(
        """INSERT INTO rollups (partner_id, day, offer_id, country, sub1, unique_clicks, clicks)
           VALUES ($1, $2, $3, 'ZZ', 'seed', $4, $4)""",
        partner,
        today,
        prog.offer_id,
        clicks,
    )
    for _ in range(conversions):
        await db.execute(
            """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, action, status,
                                        hold_until)
               VALUES ($1, now() - interval '1 hour', 'action', $2, $3, $4, 'seed', 'pending', now())""",
            uuid.uuid4(),
            prog.merchant_id,
            prog.offer_id,
            partner,
        )


async def test_conversion_rate_far_above_the_offers_norm(settings: Settings, db: asyncpg.Connection) -> None:
    prog, secret = await _offer(db, {"rate_factor": 5, "rate_min_clicks": 5})
    b_partner, b_code = await _second_partner(db, prog)
    await _seed_rate(db, prog, prog.partner_id, 10, 5)  # A converts 50 % of its clicks
    await _seed_rate(db, prog, b_partner, 100, 2)  # B 2 %: the norm A is judged by
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        a_click = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        b_click = click_id_of(await client.get(f"/c/{b_code}", headers=visitor(2)))
        await drain(settings, 2, db)
        assert (await postback(client, secret, _sale(prog, "a", a_click))).status_code == 200
        assert (await postback(client, secret, _sale(prog, "b", b_click))).status_code == 200
    await drain(settings, 4, db)
    states = {k: v for k, v in (await _states(db)).items() if k}
    assert states == {"a": ("held", "conversion_rate"), "b": ("pending", None)}


async def test_a_held_conversion_is_paid_only_once_approved(settings: Settings, db: asyncpg.Connection) -> None:
    prog, secret = await _offer(db, {"too_soon_seconds": 3600, "hold_days": 60})
    await db.execute("UPDATE offers SET hold_days = 0 WHERE id = $1", prog.offer_id)  # no lock period
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        click = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        for order in ("keep", "drop", "wait"):
            assert (await postback(client, secret, _sale(prog, order, click))).status_code == 200
    await drain(settings, 4, db)
    assert {s for s, _ in (await _states(db)).values()} == {"held"}
    now = dt.datetime.now(dt.UTC)
    period = now.strftime("%Y-%m")
    scope = figures.Scope(partner_id=prog.partner_id)
    shown = await figures.commission(db, scope, now.date(), now.date(), "all")
    assert (shown["", "USD"].held, shown["", "USD"].pending) == (3000, 0)  # 10 % of 3 x 100.00, held apart
    await settle(db, period, now=now + dt.timedelta(days=1), close=False)
    assert await db.fetchval("SELECT count(*) FROM ledger_lines") == 0  # held: never paid
    ids = dict(await db.fetch("SELECT order_id, event_id::text FROM conversions"))
    kept = await review.decide(
        db, ids["keep"], "approve", "known customer, checked by phone", "op@shop.test", prog.merchant_id
    )
    dropped = await review.decide(db, ids["drop"], "reject", "test order", "op@shop.test", prog.merchant_id)
    assert (kept["status"], dropped["status"], dropped["reason"]) == ("pending", "rejected", "fraud_rejected")
    with pytest.raises(review.ReviewError) as again:
        await review.decide(db, ids["keep"], "reject", "changed my mind", "op@shop.test", prog.merchant_id)
    assert again.value.code == "not_held"
    with pytest.raises(review.ReviewError) as elsewhere:  # another merchant's operator cannot see it
        await review.decide(db, ids["wait"], "approve", "mine?", "op@other.test", prog.merchant_id + 1000)
    assert elsewhere.value.code == "not_found"
    await settle(db, period, now=now + dt.timedelta(days=1), close=False)
    paid = await db.fetch("SELECT source, amount_minor FROM ledger_lines")
    assert [(r["source"], r["amount_minor"]) for r in paid] == [(ids["keep"], 1000)]
    assert dict(await db.fetch("SELECT order_id, status FROM conversions")) == {
        "keep": "approved",
        "drop": "rejected",
        "wait": "held",
    }


@pytest.mark.parametrize(
    ("policy", "status", "reason"), [("reject", "rejected", "hold_expired"), ("approve", "approved", None)]
)
async def test_an_unresolved_hold_expires_by_the_offers_policy(
    settings: Settings, db: asyncpg.Connection, policy: str, status: str, reason: str | None
) -> None:
    prog, secret = await _offer(db, {"too_soon_seconds": 3600, "hold_days": 7, "on_expiry": policy})
    await db.execute("UPDATE offers SET hold_days = 0 WHERE id = $1", prog.offer_id)
    async with tracker_client(settings, PER_ADDRESS) as (_app, client):
        click = click_id_of(await client.get(f"/c/{prog.code}", headers=visitor(1)))
        assert (await postback(client, secret, _sale(prog, "x", click))).status_code == 200
    await drain(settings, 2, db)
    now = dt.datetime.now(dt.UTC)
    report = await settle(db, now.strftime("%Y-%m"), now=now + dt.timedelta(days=6), close=False)
    assert await db.fetchval("SELECT status FROM conversions") == "held"  # 6 days: still held
    report = await settle(db, now.strftime("%Y-%m"), now=now + dt.timedelta(days=7, minutes=1), close=False)
    row = await db.fetchrow("SELECT status, reason, reviewed_by FROM conversions")
    assert (row["status"], row["reason"], row["reviewed_by"]) == (status, reason, "expiry")
    assert report.holds_expired == {"approved": int(policy == "approve"), "rejected": int(policy == "reject")}
    lines = await db.fetchval("SELECT count(*) FROM ledger_lines")
    assert lines == (1 if policy == "approve" else 0)
