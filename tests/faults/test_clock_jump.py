"""Clock jumps on the tracker host (libfaketime in a real uvicorn tracker) do not move events into another
statement period: a backward step is bridged by the ids' monotonic time, a forward jump is refused at
ingest with its reason (dead-letter stream), never filed into a future period."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from billing.settle import settle
from kernel.events import BadEvent, event_time
from kernel.keys import dead_key, stream_key
from kernel.settings import Settings
from tests.factories import programme
from tests.faults.test_tracker_kill import drain_all, start_tracker, stop_tracker, tracker_env
from tracker.ids import uuid7, uuid7_ms

pytestmark = pytest.mark.timeout(60)
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
DAY_MS = 86_400_000
needs_faketime = pytest.mark.skipif(
    not LIBFAKETIME.exists(), reason="libfaketime is not installed (Debian: apt-get install faketime)"
)


def _faked(settings: Settings, clock_file: Path) -> dict[str, str]:
    """A tracker whose wall clock (not its monotonic clock) follows the offset written in `clock_file`."""
    return tracker_env(
        settings,
        LD_PRELOAD=str(LIBFAKETIME),
        FAKETIME_TIMESTAMP_FILE=str(clock_file),
        FAKETIME_NO_CACHE="1",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
    )


async def _clicks(base: str, code: str, n: int, tag: str) -> list[str]:
    ids = []
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        for i in range(n):
            response = await client.get(f"/c/{code}", headers={"user-agent": f"Mozilla/5.0 {tag}-{i}"})
            assert response.status_code == 302
            ids.append(parse_qs(urlsplit(response.headers["location"]).query)["cid"][0])
    return ids


async def _stream(settings: Settings) -> list[dict[str, object]]:
    redis = aioredis.Redis.from_url(settings.redis_url)
    events = []
    for shard in range(settings.shards):
        for _, fields in await redis.xrange(stream_key(settings.key_prefix, shard)):
            events.append(orjson.loads(fields[b"d"]))
    await redis.aclose()
    return events


@needs_faketime
async def test_backward_step_keeps_events_in_their_period(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    prog = await programme(db, fee_plan={"cpc": 20})
    clock = tmp_path / "clock"
    clock.write_text("+0\n")
    proc, base = start_tracker(_faked(settings, clock), 1, tmp_path / "tracker.log")
    try:
        before = await _clicks(base, prog.code, 20, "before")
        clock.write_text("-40d\n")  # the host's clock steps back 40 days, into the previous month
        after = await _clicks(base, prog.code, 20, "after")
    finally:
        stop_tracker(proc)
    real_now = int(time.time() * 1000)

    events = {e["click_id"]: e for e in await _stream(settings)}
    stepped = [events[cid] for cid in after]
    assert all(real_now - 40 * DAY_MS - 60_000 < e["ts"] < real_now - 39 * DAY_MS for e in stepped)  # type: ignore[operator]
    # The ids carry on from the last good time: never backwards, and still today.
    times = [uuid7_ms(str(events[cid]["id"])) for cid in before + after]
    assert times == sorted(times)
    assert all(abs(t - real_now) < 60_000 for t in times)

    await drain_all(settings)
    rows = await db.fetch("SELECT click_id, ts, payload FROM events WHERE type = 'click'")
    assert len(rows) == 40
    month = dt.datetime.fromtimestamp(real_now / 1000, dt.UTC).strftime("%Y-%m")
    assert {r["ts"].strftime("%Y-%m") for r in rows} == {month}, "every click stays in the month it happened"
    said = {r["click_id"]: orjson.loads(r["payload"]) for r in rows}  # the stored payload keeps the tracker's ts
    assert all(said[cid].get("ts_tracker", said[cid]["ts"]) < real_now - 39 * DAY_MS for cid in after)
    assert all(abs(r["ts"].timestamp() * 1000 - real_now) < 60_000 for r in rows)

    # Settled: all 40 paid clicks are on this month's statement, none in the previous month's.
    await settle(db, month, close=False)
    lines = await db.fetch(
        "SELECT s.period_start FROM ledger_lines l JOIN statements s ON s.id = l.statement_id WHERE l.kind = 'cpc'"
    )
    assert len(lines) == 40
    assert {f"{r['period_start']:%Y-%m}" for r in lines} == {month}
    print(f"\nbackward step of 40 days: 20 clicks before, 20 after, all stored and paid in {month}")


@needs_faketime
async def test_forward_jump_is_refused_with_its_reason(
    settings: Settings, db: asyncpg.Connection, tmp_path: Path
) -> None:
    prog = await programme(db, fee_plan={"cpc": 20})
    clock = tmp_path / "clock"
    clock.write_text("+0\n")
    proc, base = start_tracker(_faked(settings, clock), 1, tmp_path / "tracker.log")
    try:
        right = await _clicks(base, prog.code, 10, "right")
        clock.write_text("+40d\n")  # the host's clock jumps 40 days ahead: two statement periods later
        ahead = await _clicks(base, prog.code, 10, "ahead")
        clock.write_text("+0\n")  # and is put right again: the tracker follows, nothing stays ahead
        right += await _clicks(base, prog.code, 10, "right-again")
    finally:
        stop_tracker(proc)
    real_now = int(time.time() * 1000)

    ingest = await drain_all(settings)
    stored = {r["click_id"]: r["ts"] for r in await db.fetch("SELECT click_id, ts FROM events WHERE type = 'click'")}
    assert set(stored) == set(right), "the clicks dated 40 days ahead are not stored, the others are"
    assert max(ts.timestamp() * 1000 for ts in stored.values()) < real_now + 1000
    redis = aioredis.Redis.from_url(settings.redis_url)
    dead = []
    for shard in range(settings.shards):
        dead += await redis.xrange(dead_key(settings.key_prefix, shard))
    await redis.aclose()
    assert sorted(orjson.loads(fields[b"d"])["click_id"] for _, fields in dead) == sorted(ahead)
    assert all(fields[b"u"] in (b"0", b"1") for _, fields in dead), "a dead letter keeps what Redis decided"
    reasons = {fields[b"reason"].decode() for _, fields in dead}
    assert all("ahead of ingest's clock" in reason for reason in reasons), reasons
    assert ingest.stats.dead == len(ahead)
    print(
        f"\nforward jump of 40 days: {len(ahead)} clicks refused to the dead-letter stream, e.g. {sorted(reasons)[0]}"
    )


def _id_at(ms: int) -> str:
    """A UUIDv7-shaped id for `ms`, not through the process's monotonic guard."""
    h = f"{ms:012x}"
    return f"{h[:8]}-{h[8:12]}-7abc-8def-0123456789ab"


def test_event_time_rules() -> None:
    now = int(time.time() * 1000)
    assert event_time(_id_at(now), now, now) == now
    assert event_time(_id_at(now + 400), now, now) == now  # a slow request body: ts kept
    assert event_time(_id_at(now), now - 40 * DAY_MS, now) == now  # clock stepped back after the id: the id's time
    assert event_time(_id_at(now - 40 * DAY_MS), now - 40 * DAY_MS, now) == now - 40 * DAY_MS  # a late event
    assert event_time("0b5c0e5e-3f4e-4d4e-9d5e-000000000001", now - DAY_MS, now) == now - DAY_MS  # not a v7 id
    assert event_time(_id_at(now), now + 60_000, now) == now + 60_000  # a minute ahead: ordinary skew
    with pytest.raises(BadEvent, match="ahead of ingest's clock"):
        event_time(_id_at(now + 40 * DAY_MS), now + 40 * DAY_MS, now)


def test_ids_never_go_below_the_start_clock_carried_forward() -> None:
    now = int(time.time() * 1000)
    first = uuid7_ms(uuid7(now))
    stepped = uuid7_ms(uuid7(now - 40 * DAY_MS))  # the clock stepped back: the id keeps today's time
    assert first - 2 <= stepped < first + 1000  # (the floor may read a millisecond low: both clocks are truncated)
    assert uuid7_ms(uuid7(now + 3_600_000)) == now + 3_600_000  # a forward step is followed
    corrected = uuid7_ms(uuid7(int(time.time() * 1000)))  # and so is the step back that corrects it
    assert first - 2 <= corrected < first + 1000
