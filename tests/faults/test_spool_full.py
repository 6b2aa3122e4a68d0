"""Redis down and the spool's disk full (a real tmpfs of 256 KiB, filled up): visitors still get their
302, /readyz says not ready and why, /metrics counts the lost events, no torn line is left in the spool,
and the tracker recovers by itself once there is room again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import orjson
import pytest

from clickmint.embedded import pick_port
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import click_id_of, postback, tracker_client
from tracker.spool import parse_lines

pytestmark = pytest.mark.timeout(60)
TMPFS_BYTES = 256 * 1024
ROOM_LEFT = 24 * 1024  # what the filler leaves: a few dozen events, then the disk is full


@pytest.fixture
def tiny_spool_disk(settings: Settings) -> Iterator[Path]:
    """The tracker's spool directory on a tmpfs of its own (mounting needs root: skipped otherwise)."""
    spool = settings.data_dir / "spool"
    spool.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES},mode=0700", "tmpfs", str(spool)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for the spool here: {mounted.stderr.strip()}")
    try:
        yield spool
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


def _fill(directory: Path, leave: int) -> Path:
    """A filler file taking all the room of the filesystem but `leave` bytes."""
    filler = directory / "filler.bin"
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(free - leave, 0))
    return filler


def _fill_completely(directory: Path) -> None:
    """Not one byte of room left."""
    with open(directory / "last-bytes.bin", "wb", buffering=0) as last, contextlib.suppress(OSError):
        while True:
            last.write(b"\0" * 512)


def _spooled_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.iterdir()) if p.suffix in (".log", ".ready"))


def _gauge(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(f"clickmint_{name} "))
    return float(line.split()[1])


async def test_full_spool_disk_with_redis_down(
    settings: Settings, db: asyncpg.Connection, tiny_spool_disk: Path
) -> None:
    prog = await programme(db)
    dead = replace(settings, redis_url=f"redis://127.0.0.1:{pick_port(0)}/0")
    filler = _fill(tiny_spool_disk, ROOM_LEFT)
    statuses: list[int] = []
    async with tracker_client(dead) as (app, client):
        assert (await client.get("/readyz")).status_code == 503  # not even 64 KiB of room: not ready from the start

        async def visitor(n: int) -> None:
            for i in range(40):
                response = await client.get(f"/c/{prog.code}", headers={"user-agent": f"Mozilla/5.0 v{n}-{i}"})
                statuses.append(response.status_code)
                assert "cid=" in response.headers["location"]

        await asyncio.gather(*(visitor(n) for n in range(8)))
        stats = app.recorder.stats
        spooled, lost = stats.events_spooled, stats.events_lost
        ready = await client.get("/readyz")
        metrics = (await client.get("/metrics")).text
        # Every line in the spool is a whole event: a batch that failed half-written was cut off again.
        data = _spooled_bytes(tiny_spool_disk)
        lines = list(parse_lines(data))
        assert len(lines) == spooled == data.count(b"\n")
        assert all(orjson.loads(payload)["type"] == "click" for _, payload in lines)

        # Room again: ready at once, and the next clicks are spooled again.
        filler.unlink()
        recovered = await client.get("/readyz")
        after = await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0 after"})
        metrics_after = (await client.get("/metrics")).text
        spooled_after = app.recorder.stats.events_spooled

    print(f"\nspool full: {len(statuses)} clicks answered, {spooled} spooled, {lost} lost, readyz {ready.json()}")
    assert set(statuses) == {302}, "visitors are redirected even when the event cannot be kept"
    assert spooled > 0 and lost > 0 and spooled + lost == len(statuses)
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False and body["redis"] is False and body["spool_writable"] is False
    assert "No space left on device" in body["reason"] and str(tiny_spool_disk) in body["reason"]
    assert _gauge(metrics, "spool_full") == 1.0
    assert _gauge(metrics, "spool_write_errors_total") >= 1
    assert _gauge(metrics, "events_lost_total") == lost
    assert _gauge(metrics, "redis_up") == 0.0

    assert recovered.status_code == 200 and recovered.json()["spool_writable"] is True
    assert after.status_code == 302 and spooled_after == spooled + 1
    assert _gauge(metrics_after, "spool_full") == 0.0 and _gauge(metrics_after, "spool_writable") == 1.0


async def test_conversions_with_nowhere_durable_to_go(
    settings: Settings, db: asyncpg.Connection, tiny_spool_disk: Path
) -> None:
    """Redis down and the spool unwritable: the pixel still answers its GIF (refusal in the header), a
    postback is a 503 with Retry-After so the merchant retries, TUNE says success=false; none is billed."""
    prog = await programme(db)
    tune_token = "tune-token-of-the-offer-0123456789"  # an HMAC offer takes TUNE only with a token of its own
    secret = await db.fetchval(
        "UPDATE offers SET tune_token = $2 WHERE id = $1 RETURNING postback_secret", prog.offer_id, tune_token
    )
    dead = replace(settings, redis_url=f"redis://127.0.0.1:{pick_port(0)}/0")
    async with tracker_client(dead) as (app, client):
        cid = click_id_of(await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"}))
        app.recorder.spool.rotate()  # the next batch needs a new file, hence a new page of the disk
        _fill_completely(tiny_spool_disk)
        pixel = await client.get(f"/a/{prog.offer_id}?click_id={cid}&action=signup")
        signed = await postback(client, secret, {"offer_id": prog.offer_id, "click_id": cid, "action": "lead"})
        tune = await client.get(
            f"/aff_lsr?offer_id={prog.offer_id}&transaction_id={cid}&amount=10.00&adv_sub=T1&security_token={tune_token}"
        )
        metrics = (await client.get("/metrics")).text
    assert tune.status_code == 503 and tune.text.startswith("success=false; err_msg=not_recorded")
    assert pixel.status_code == 200 and pixel.headers["content-type"] == "image/gif"
    assert pixel.headers["x-clickmint-refusal"] == "not_recorded"
    # A signed postback already needs Redis to refuse replays: it is told to retry before recording.
    assert signed.status_code == 503 and signed.json()["error"] in ("try_again", "not_recorded")
    assert 'code="not_recorded"' in metrics
