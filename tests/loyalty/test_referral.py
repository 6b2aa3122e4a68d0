"""Refer a friend: a member's link is a partner of its own on the referral offer; the friend's first purchase
through it rewards both, once per friend; the member itself and the member's own browser are refused."""

from __future__ import annotations

import datetime as dt
import uuid

import asyncpg
import orjson

from billing import events as event_rows
from billing import loyalty_config, loyalty_referral
from billing import loyalty_ledger as ledger
from billing.derive import Deriver
from kernel.settings import Settings
from tests.loyalty_kit import START, balance, check_invariants, ms, refund, sale, shop
from tests.portal.kit import add_user, api_key, portal_client


async def _store_and_derive(db: asyncpg.Connection, deriver: Deriver, *evs: dict) -> None:
    """As ingest: the events stored (so a purchase finds its click), then derived, in one transaction."""
    if not await db.fetchval("SELECT to_regclass('pg_temp.ingest_stage') IS NOT NULL"):
        await event_rows.prepare(db)
    parsed = [event_rows.to_row({b"d": orjson.dumps(e)}) for e in evs]
    await event_rows.ensure_partitions(db, {row[1].date() for row, _ in parsed}, set())
    async with db.transaction():
        await event_rows.store(db, [row for row, _ in parsed])
        await deriver(db, [event for _, event in parsed])


def _click(link: int, partner: int, offer: int, click_id: str, ua: str, at: dt.datetime) -> dict:
    return {
        "id": str(uuid.uuid4()), "ts": ms(at), "type": "click", "link": link, "partner": partner, "offer": offer,
        "click_id": click_id, "unique": True, "bot": None, "country": "DE", "ip": "203.0.113.0", "ua": ua,
    }  # fmt: skip


async def test_refer_a_friend(db: asyncpg.Connection) -> None:
    prog = await shop(db, hold_days=10)
    offer = await db.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, hold_days)
           VALUES ($1, 'Refer a friend', 'https://shop.example.com/', 'USD', 10) RETURNING id""",
        prog.merchant_id,
    )
    await loyalty_config.save_programme(
        db, prog.merchant_id, {"referral": {"offer_id": offer, "referrer_points": 500, "friend_points": 250}}
    )
    loyalty = await ledger.programme_of(db, prog.merchant_id)
    await ledger.adjust(db, loyalty, "alice", 1, "member", "test")
    made = await loyalty_referral.link(db, loyalty, "alice")
    assert made == await loyalty_referral.link(db, loyalty, "alice")  # one link per member
    ref = await db.fetchrow("SELECT partner_id, link_id FROM loyalty_referrals WHERE code = $1", made["code"])
    partner, link = ref["partner_id"], ref["link_id"]
    deriver = Deriver()
    t = START
    # Alice's own purchase, from her browser (UA-A), through the shop's usual partner link.
    await _store_and_derive(
        db, deriver, _click(prog.link_id, prog.partner_id, prog.offer_id, "c-alice", "UA-A", t),
        sale(prog, "alice", "A-1", 1_000, at=t, click_id="c-alice"),
    )  # fmt: skip

    def via_link(customer: str, order: str, click_id: str, at: dt.datetime, amount: int = 10_000) -> dict:
        return sale(prog, customer, order, amount, at=at, offer=offer, link=link, partner=partner, click_id=click_id)

    t += dt.timedelta(hours=1)
    await _store_and_derive(
        db, deriver,
        _click(link, partner, offer, "c-bob", "UA-B", t), via_link("bob", "B-1", "c-bob", t),  # a friend: rewarded
        _click(link, partner, offer, "c-al2", "UA-A", t), via_link("alice", "A-2", "c-al2", t),  # herself: refused
        _click(link, partner, offer, "c-dave", "UA-A", t), via_link("dave", "D-1", "c-dave", t),  # her browser
    )  # fmt: skip
    t += dt.timedelta(hours=1)
    await _store_and_derive(
        db, deriver, _click(link, partner, offer, "c-b2", "UA-B", t), via_link("bob", "B-2", "c-b2", t)
    )
    lots = await db.fetch(
        "SELECT customer_ref, rule, points FROM loyalty_lots WHERE rule LIKE 'referral:%' ORDER BY rule"
    )
    assert [tuple(r) for r in lots] == [("bob", "referral:friend", 250), ("alice", "referral:referrer", 500)]
    await ledger.activate_due(db, t + dt.timedelta(days=11))
    # Alice bought A-1 through the shop's partner and A-2 through her own referral link: the fraud rule
    # "one customer through several partners" holds A-2 for the operator, and its points wait with it.
    held = await db.fetchrow("SELECT status, held_reason FROM conversions WHERE order_id = 'A-2'")
    assert tuple(held) == ("held", "multi_partner")
    # Bob: 100 + 100 points for his two purchases and 250 as a friend; Alice: 1 + 10 (A-1) + 500, A-2's 100 held.
    assert await balance(db, prog, "bob") == 450
    assert await balance(db, prog, "alice") == 511
    assert await balance(db, prog, "dave") == 100
    await check_invariants(db)


async def test_a_refund_within_the_hold_cancels_the_referral_too(db: asyncpg.Connection) -> None:
    prog = await shop(db, hold_days=10)
    await loyalty_config.save_programme(
        db, prog.merchant_id, {"referral": {"offer_id": prog.offer_id, "referrer_points": 500, "friend_points": 250}}
    )
    loyalty = await ledger.programme_of(db, prog.merchant_id)
    await ledger.adjust(db, loyalty, "alice", 1, "member", "test")
    code = (await loyalty_referral.link(db, loyalty, "alice"))["code"]
    ref = await db.fetchrow("SELECT partner_id, link_id FROM loyalty_referrals WHERE code = $1", code)
    deriver = Deriver()
    friend_sale = sale(prog, "bob", "B-1", 10_000, link=ref["link_id"], partner=ref["partner_id"])
    await _store_and_derive(db, deriver, friend_sale)
    await _store_and_derive(db, deriver, refund(prog, "B-1", 10_000, START + dt.timedelta(days=1)))
    await ledger.activate_due(db, START + dt.timedelta(days=11))
    assert await balance(db, prog, "alice") == 1 and await balance(db, prog, "bob") == 0
    await check_invariants(db)


async def test_referral_api_and_refusals(db: asyncpg.Connection, settings: Settings) -> None:
    prog = await shop(db)
    operator = await add_user(db, "till@shop.example", "operator", merchant_id=prog.merchant_id)
    key = await api_key(db, operator, ("loyalty",))
    headers = {"authorization": f"Bearer {key}", "idempotency-key": "r1"}
    async with portal_client(settings) as client:
        off = await client.post("/api/v1/loyalty/referrals", json={"customer": "alice"}, headers=headers)
        assert (off.status_code, off.json()["error"]) == (404, "referral_off")
        bad = loyalty_config.save_programme  # the offer must be the merchant's own
        other = await shop(db)
        try:
            await bad(db, prog.merchant_id, {"referral": {"offer_id": other.offer_id, "referrer_points": 1,
                                                          "friend_points": 1}})  # fmt: skip
            raise AssertionError("another merchant's offer was accepted")
        except loyalty_config.LoyaltyError as exc:
            assert exc.code == "invalid_field"
        await bad(
            db, prog.merchant_id, {"referral": {"offer_id": prog.offer_id, "referrer_points": 1, "friend_points": 1}}
        )
        nobody = await client.post(
            "/api/v1/loyalty/referrals", json={"customer": "alice"}, headers=headers | {"idempotency-key": "r2"}
        )
        assert (nobody.status_code, nobody.json()["error"]) == (404, "unknown_member")
        await ledger.enroll(db, prog.merchant_id, "alice", dt.datetime.now(dt.UTC))
        made = await client.post(
            "/api/v1/loyalty/referrals", json={"customer": "alice"}, headers=headers | {"idempotency-key": "r3"}
        )
        assert made.status_code == 201 and made.json()["url"] == f"https://t.example/c/{made.json()['code']}"
