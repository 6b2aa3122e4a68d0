"""A click spooled while Redis was away or slower than the budget: its uniqueness is decided when the spool is
replayed, by the same SET NX, not assumed. Before, every spooled click was counted unique, so a visitor coming
back during a Redis stall (an AOF rewrite's fork is one) was paid a second unique click."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import asyncpg

from clickmint.embedded import pick_port
from kernel.settings import Settings
from tests.factories import programme
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
    assert len(spooled) == 3 and all(unique is not None for _, _, unique in spooled)  # each carries its key

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


def test_spool_lines_old_and_new_and_torn() -> None:
    data = (
        b'1 {"id":"a"}\n'  # a line as older trackers wrote it: its verdicts in its payload
        b'2 {"id":"b"}\tcm:uniq:{2}:7:v 86400\n'  # a click whose uniqueness the replay decides
    )
    assert list(parse_entries(data)) == [(1, b'{"id":"a"}', None), (2, b'{"id":"b"}', (b"cm:uniq:{2}:7:v", 86400))]
    # a torn last line is never acknowledged: skipped wherever it was cut, even where what is left parses
    for torn in (b'3 {"id":"c"}\tcm:uniq:{3}:7:v', b'3 {"id":"c"}\tcm:uniq:{3}:7:v 864', b'3 {"id":"c"}'):
        assert list(parse_entries(data + torn)) == list(parse_entries(data))
