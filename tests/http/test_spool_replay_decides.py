"""What Redis could not decide while it was away or slower than the budget is decided when the spool is
replayed, not assumed: a click's uniqueness (by the same SET NX) and a conversion's caps (by the same cap
script, in order). Before, every spooled click was counted unique, so a visitor coming back during a Redis
stall (an AOF rewrite's fork is one) was paid a second unique click, and every spooled conversion was paid
whatever its caps."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import asyncpg
import httpx
import orjson

from clickmint.embedded import pick_port
from kernel.redis.resp import pack
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import click_id_of
from tests.http.test_bursts import CHROME, FIREFOX
from tests.http.tracker_client import running
from tracker.spool import parse_entries


async def test_a_returning_visitors_spooled_click_is_not_unique_once_replayed(
    settings: Settings, db: asyncpg.Connection
) -> None:
    prog = await programme(db)
    async with running(settings) as live:  # Redis answers: the first click of the visitor is unique
        await live.http.get(f"/c/{prog.code}", headers={"user-agent": FIREFOX})

    dead = replace(settings, redis_url=f"redis://127.0.0.1:{pick_port(0)}/0")
    async with running(dead) as away:  # Redis away: the clicks go to the spool
        await away.http.get(f"/c/{prog.code}", headers={"user-agent": FIREFOX})  # the same visitor, back
        await away.http.get(f"/c/{prog.code}", headers={"user-agent": FIREFOX})
        await away.http.get(f"/c/{prog.code}", headers={"user-agent": CHROME})  # a new visitor
        assert away.app.recorder.stats.events_spooled == 3
    spooled = [
        entry for path in sorted((settings.data_dir / "spool").iterdir()) for entry in parse_entries(path.read_bytes())
    ]
    assert len(spooled) == 3 and all(unique is not None for _, _, unique, _ in spooled)  # each carries its key

    async with running(settings) as back:  # Redis back: the spool is replayed, uniqueness decided then
        for _ in range(200):
            if len(await back.events()) == 4:
                break
            await asyncio.sleep(0.05)
        events = await back.events()
    by_visitor = [(e["ua"] == FIREFOX, e["unique"]) for e in events]
    assert by_visitor == [(True, True), (True, False), (True, False), (False, True)]
    assert [bool(e.get("degraded")) for e in events] == [False, True, True, True]  # the burst verdicts stay local
    assert not list((settings.data_dir / "spool").glob("*.ready"))


async def test_spooled_conversions_are_checked_against_their_caps_at_replay(
    settings: Settings, db: asyncpg.Connection
) -> None:
    prog = await programme(db, caps={"per_partner": {"conversions": {"lifetime": 2}}})
    # a token postback: a signed one needs Redis for its nonce, so it is refused 503 while Redis is away (and
    # spooled only when Redis is slower than the budget); a token one is answered and spooled
    secret = await db.fetchval(
        "UPDATE offers SET postback_security = 'token' WHERE id = $1 RETURNING postback_secret", prog.offer_id
    )

    async def sale(http: httpx.AsyncClient, n: int) -> httpx.Response:
        body = {"offer_id": prog.offer_id, "click_id": click_id, "action": "signup", "order_id": f"o{n}"}
        return await http.post(
            "/postback", content=orjson.dumps(body | {"token": secret}), headers={"content-type": "application/json"}
        )

    async with running(settings) as live:  # Redis answers: the first conversion uses one of the two
        click_id = click_id_of(await live.http.get(f"/c/{prog.code}"))
        assert (await sale(live.http, 0)).json()["status"] == "accepted"
    dead = replace(settings, redis_url=f"redis://127.0.0.1:{pick_port(0)}/0")
    async with running(dead) as away:  # Redis away: three more, answered, spooled with their cap checks
        for n in (1, 2, 3):
            assert (await sale(away.http, n)).status_code == 200
        assert away.app.recorder.stats.events_spooled == 3
    async with running(settings) as back:
        for _ in range(200):
            if len(await back.events()) == 5:
                break
            await asyncio.sleep(0.05)
        events = await back.events()
        used = await back.redis.keys(f"{settings.key_prefix}:cap:*")
    conversions = [e for e in events if e["type"] == "action"]
    assert [e["order_id"] for e in conversions] == ["o0", "o1", "o2", "o3"]
    assert [bool(e.get("over_cap")) for e in conversions] == [False, False, True, True]  # the limit: 2
    assert used  # the replayed checks counted against the same counter


def test_spool_lines_old_and_new_and_torn() -> None:
    check = pack(b"EVALSHA", b"0" * 40, 1, b"cm:cap:{o7}:conversions", 1, 0, 1)
    data = (
        b'1 {"id":"a"}\n'  # a line as older trackers wrote it: its verdicts in its payload
        b'2 {"id":"b"}\tu cm:uniq:{2}:7:v 86400\n'  # a click whose uniqueness the replay decides
        b'0 {"id":"c"}\tc ' + base64.b64encode(check) + b"\n"  # a conversion whose caps the replay checks
        b'3 {"id":"d"}\tu cm:uniq:{3}:7:v'  # torn in its key: never acknowledged, skipped
    )
    assert list(parse_entries(data)) == [
        (1, b'{"id":"a"}', None, ()),
        (2, b'{"id":"b"}', (b"cm:uniq:{2}:7:v", 86400), ()),
        (0, b'{"id":"c"}', None, (check,)),
    ]
    torn = b'0 {"id":"c"}\tc ' + base64.b64encode(check)[:-6]  # torn inside the check
    assert list(parse_entries(torn)) == []
