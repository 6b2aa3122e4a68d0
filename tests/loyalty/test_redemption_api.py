"""The checkout's redemption API: reserve, confirm, release with Idempotency-Key, never above the balance
under concurrency, within the key's merchant only; the member's signed view."""

from __future__ import annotations

import asyncio
import datetime as dt

import asyncpg
import httpx
import pytest

from billing import loyalty_ledger as ledger
from billing import loyalty_redeem as redeem
from kernel.loyalty_rules import LoyaltyError
from kernel.settings import Settings
from portal.loyalty_api import member_token
from tests.loyalty_kit import balance, check_invariants, shop
from tests.portal.kit import add_user, api_key, portal_client

pytestmark = pytest.mark.timeout(120)


async def _setup(db: asyncpg.Connection, points: int = 1_000) -> tuple:
    prog = await shop(db)
    operator = await add_user(db, "till@shop.example", "operator", merchant_id=prog.merchant_id)
    key = await api_key(db, operator, ("loyalty",))
    other = await shop(db)
    other_operator = await add_user(db, "till@other.example", "operator", merchant_id=other.merchant_id)
    other_key = await api_key(db, other_operator, ("loyalty",))
    read_key = await api_key(db, operator, ("read", "write"))
    await ledger.enroll(db, prog.merchant_id, "alice", dt.datetime.now(dt.UTC))
    loyalty = await ledger.programme_of(db, prog.merchant_id)
    await ledger.adjust(db, loyalty, "alice", points, "welcome gift", "ops@shop.example")
    return prog, key, other_key, read_key


def _h(key: str, idem: str | None = None) -> dict[str, str]:
    headers = {"authorization": f"Bearer {key}"}
    if idem is not None:
        headers["idempotency-key"] = idem
    return headers


async def test_reserve_confirm_release_and_replays(db: asyncpg.Connection, settings: Settings):
    prog, key, _, _ = await _setup(db)
    async with portal_client(settings) as client:
        body = {"customer": "alice", "order_id": "A-1", "points": 300, "order_total_minor": 10_000}
        first = await client.post("/api/v1/loyalty/redemptions", json=body, headers=_h(key, "k1"))
        assert first.status_code == 201, first.text
        assert first.json() | {"id": 0} == {
            "id": 0, "customer": "alice", "order_id": "A-1", "points": 300, "discount_minor": 300,
            "currency": "USD", "status": "reserved", "balance": 700,
        }  # fmt: skip
        replay = await client.post("/api/v1/loyalty/redemptions", json=body, headers=_h(key, "k1"))
        assert (replay.status_code, replay.json()) == (201, first.json())  # the first answer, nothing spent again
        assert await balance(db, prog, "alice") == 700
        reused = await client.post("/api/v1/loyalty/redemptions", json=body | {"points": 301}, headers=_h(key, "k1"))
        assert (reused.status_code, reused.json()["error"]) == (409, "idempotency_key_reused")
        rid = first.json()["id"]
        released = await client.post(f"/api/v1/loyalty/redemptions/{rid}/release", json={}, headers=_h(key, "k2"))
        assert (released.status_code, released.json()["status"], released.json()["balance"]) == (200, "released", 1000)
        again = await client.post(f"/api/v1/loyalty/redemptions/{rid}/confirm", json={}, headers=_h(key, "k3"))
        assert (again.status_code, again.json()["error"]) == (409, "already_released")
        # By discount: 2.50 USD at 100 points = 1.00 USD is 250 points; then confirmed.
        second = await client.post(
            "/api/v1/loyalty/redemptions",
            json={"customer": "alice", "order_id": "A-1", "discount_minor": 250},
            headers=_h(key, "k4"),
        )
        assert (second.status_code, second.json()["points"], second.json()["balance"]) == (201, 250, 750)
        rid = second.json()["id"]
        confirmed = await client.post(f"/api/v1/loyalty/redemptions/{rid}/confirm", json={}, headers=_h(key, "k5"))
        assert confirmed.json()["status"] == "confirmed"
        no = await client.post(f"/api/v1/loyalty/redemptions/{rid}/release", json={}, headers=_h(key, "k6"))
        assert (no.status_code, no.json()["error"]) == (409, "already_confirmed")
        member = await client.get("/api/v1/loyalty/members/alice", headers=_h(key))
        assert member.status_code == 200
        view = member.json()
        assert (view["balance"], view["value_minor"], view["currency"]) == (750, 750, "USD")
        assert [e["kind"] for e in view["history"]][:3] == ["spend", "spend", "spend"]
        # The member's signed view, public, for the shop's widget.
        public = await client.get(view["member_json"])
        assert public.status_code == 200 and public.json()["balance"] == 750
        page = await client.get(view["member_link"])
        assert page.status_code == 200 and "Your points" in page.text and "750 points" in page.text
        assert "7.50" in page.text  # 750 points at 100 points = 1.00 USD
        polish = await client.get(view["member_link"], headers={"accept-language": "pl"})
        assert "Twoje punkty" in polish.text and "750 punktów" in polish.text and "7,50 USD" in polish.text
        await db.execute("UPDATE merchants SET default_locale = 'de' WHERE id = $1", prog.merchant_id)
        german = await client.get(view["member_link"])  # no browser language: the shop's default
        assert "Ihre Punkte" in german.text and "750 Punkte" in german.text and "Your points" not in german.text
        assert (await client.get(view["member_link"][:-4] + "0000")).status_code == 404
        forged = view["member_json"][:-4] + "0000"
        assert (await client.get(forged)).json()["error"] == "invalid_token"
    assert await balance(db, prog, "alice") == 750
    await check_invariants(db)


@pytest.mark.parametrize(
    ("body", "idem", "status", "code"),
    [
        ({"customer": "alice", "order_id": "o", "points": 300}, None, 400, "idempotency_key_missing"),
        ({"customer": "alice", "order_id": "o", "points": 2000}, "x", 409, "insufficient_points"),
        (
            {"customer": "alice", "order_id": "o", "points": 600, "order_total_minor": 500},
            "x",
            400,
            "over_order_limit",
        ),
        ({"customer": "alice", "order_id": "o", "points": -5}, "x", 400, "invalid_field"),
        ({"customer": "alice", "order_id": "o", "points": 5, "discount_minor": 5}, "x", 400, "invalid_field"),
        ({"customer": "alice", "order_id": "", "points": 5}, "x", 400, "invalid_field"),
        ({"customer": "nobody", "order_id": "o", "points": 5}, "x", 404, "unknown_member"),
        ({"customer": ["alice"], "order_id": "o", "points": 5}, "x", 400, "invalid_field"),
    ],
)
async def test_refusals_write_nothing(
    db: asyncpg.Connection, settings: Settings, body: dict, idem: str | None, status: int, code: str
):
    prog, key, _, _ = await _setup(db)
    async with portal_client(settings) as client:
        answer = await client.post("/api/v1/loyalty/redemptions", json=body, headers=_h(key, idem))
    assert (answer.status_code, answer.json()["error"]) == (status, code)
    assert await db.fetchval("SELECT count(*) FROM loyalty_redemptions") == 0
    assert await db.fetchval("SELECT count(*) FROM loyalty_idempotency") == 0
    assert await balance(db, prog, "alice") == 1_000


async def test_credentials_and_tenancy(db: asyncpg.Connection, settings: Settings):
    _, key, other_key, read_key = await _setup(db)
    body = {"customer": "alice", "order_id": "o", "points": 10}
    async with portal_client(settings) as client:
        assert (await client.get("/api/v1/loyalty/members/alice")).status_code == 401
        bad = await client.get("/api/v1/loyalty/members/alice", headers=_h(read_key))
        assert (bad.status_code, bad.json()["error"]) == (404, "not_found")  # not a loyalty key: no such route
        theirs = await client.get("/api/v1/loyalty/members/alice", headers=_h(other_key))
        assert (theirs.status_code, theirs.json()["error"]) == (404, "unknown_member")  # not their customer
        mine = await client.post("/api/v1/loyalty/redemptions", json=body, headers=_h(key, "same"))
        rid = mine.json()["id"]
        # Another merchant's checkout can neither confirm nor release it, nor replay our key.
        for action in ("confirm", "release"):
            answer = await client.post(
                f"/api/v1/loyalty/redemptions/{rid}/{action}", json={}, headers=_h(other_key, "z")
            )
            assert (answer.status_code, answer.json()["error"]) == (404, "not_found")
        replay = await client.post("/api/v1/loyalty/redemptions", json=body, headers=_h(other_key, "same"))
        assert (replay.status_code, replay.json()["error"]) == (404, "unknown_member")
        # A loyalty key does not open the rest of the API.
        assert (await client.get("/api/v1/admin/offers", headers=_h(key))).status_code == 403
    assert await db.fetchval("SELECT status FROM loyalty_redemptions WHERE id = $1", rid) == "reserved"


async def test_forty_parallel_redemptions_never_exceed_the_balance(db: asyncpg.Connection, settings: Settings):
    prog, key, _, _ = await _setup(db, points=1_000)
    async with portal_client(settings) as client:

        async def attempt(i: int) -> httpx.Response:
            body = {"customer": "alice", "order_id": f"order-{i}", "points": 70}
            return await client.post("/api/v1/loyalty/redemptions", json=body, headers=_h(key, f"key-{i}"))

        answers = await asyncio.gather(*(attempt(i) for i in range(40)))
        won = [a for a in answers if a.status_code == 201]
        assert len(won) == 14  # 14 x 70 = 980 <= 1,000 < 15 x 70
        assert {a.json()["error"] for a in answers if a.status_code != 201} == {"insufficient_points"}
        replays = await asyncio.gather(*(attempt(i) for i in range(40)))
        for first, replay in zip(answers, replays, strict=True):
            if first.status_code == 201:  # a stored answer comes back as it was
                assert (replay.status_code, replay.json()) == (201, first.json())
            else:  # a refusal stored nothing: it is decided again, still no points
                assert replay.status_code == 409
    assert await balance(db, prog, "alice") == 20
    assert await db.fetchval("SELECT sum(points) FROM loyalty_redemptions") == 980
    await check_invariants(db)


async def test_forty_parallel_reservations_on_their_own_connections(db: asyncpg.Connection, servers):
    prog = await shop(db)
    await ledger.enroll(db, prog.merchant_id, "bob", dt.datetime.now(dt.UTC))
    loyalty = await ledger.programme_of(db, prog.merchant_id)
    await ledger.adjust(db, loyalty, "bob", 500, "gift", "ops")
    pool = await asyncpg.create_pool(servers.database_url, min_size=20, max_size=20)
    try:

        async def attempt(i: int) -> int:
            async with pool.acquire() as conn:
                try:
                    return (await redeem.reserve(conn, loyalty, "bob", f"o{i}", 30))["points"]
                except LoyaltyError as exc:
                    assert exc.code == "insufficient_points"
                    return 0

        spent = await asyncio.gather(*(attempt(i) for i in range(40)))
    finally:
        await pool.close()
    assert sum(spent) == 480 and await balance(db, prog, "bob") == 20
    await check_invariants(db)


async def test_member_token_expires(db: asyncpg.Connection):
    prog = await shop(db)
    secret = await db.fetchval("SELECT link_secret FROM loyalty_programmes WHERE merchant_id = $1", prog.merchant_id)
    from portal.loyalty_api import read_token

    now = dt.datetime.now(dt.UTC)
    token = member_token(secret, prog.merchant_id, "ünï.côde", now + dt.timedelta(minutes=1))
    assert (await read_token(db, token, now))[1] == "ünï.côde"
    with pytest.raises(LoyaltyError):
        await read_token(db, token, now + dt.timedelta(minutes=2))
    with pytest.raises(LoyaltyError):
        await read_token(db, token.replace(f"{prog.merchant_id}.", f"{prog.merchant_id + 1}.", 1), now)
