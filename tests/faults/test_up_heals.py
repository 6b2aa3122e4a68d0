"""`clickmint up` heals what it started: kill -9 of the embedded Valkey, then of PostgreSQL, under load.

No human step: the supervisor starts each server again on its port, the tracker replays its spool, ingest
resumes, the portal answers again, and every click answered with a 302 is in PostgreSQL exactly once. While
Valkey is away the tracker says it is degraded (/readyz 200 with "degraded": true, `clickmint_degraded 1`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import psutil
import pytest

from clickmint.embedded import pick_port
from tests.factories import programme
from tests.helpers import METRICS_AUTH, METRICS_TOKEN
from tests.helpers import visitor as new_visitor

pytestmark = pytest.mark.timeout(120)
VISITORS = 4


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="clickmint-heal-"))
    os.chmod(base, 0o755)  # PostgreSQL runs unprivileged when the suite runs as root
    yield base / "data"
    subprocess.run(["rm", "-rf", str(base)], check=False)


class Up:
    """A `clickmint up` child whose output is collected line by line (and so never fills its pipe)."""

    def __init__(self, data_dir: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKMINT_")}
        env.update(
            CLICKMINT_DATA_DIR=str(data_dir),
            CLICKMINT_TRACKER_PORT=str(pick_port(0)),
            CLICKMINT_PORTAL_PORT=str(pick_port(0)),
            CLICKMINT_METRICS_PORT="0",
            CLICKMINT_BILLING_METRICS_PORT="0",
            CLICKMINT_METRICS_TOKEN=METRICS_TOKEN,
            CLICKMINT_TRUST_FORWARDED="true",  # each test visitor an address of its own
            CLICKMINT_TRACKER_WORKERS="1",
            CLICKMINT_SHARDS="2",
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clickmint", "up"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for("Seed a demo", 60)
        self.info = json.loads((data_dir / "run.json").read_text())

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float, after: int = 0) -> int:
        """The index of the first line from `after` on that holds `text`, once it is there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i in range(after, len(self.lines)):
                if text in self.lines[i]:
                    return i
            assert self.proc.poll() is None, "clickmint up exited:\n" + self.output()
            time.sleep(0.05)
        raise AssertionError(f"no line with {text!r} within {timeout}s:\n" + self.output())

    def server(self, name: str) -> psutil.Process:
        """The embedded server `up` started (its direct child named `name`)."""
        found = [p for p in psutil.Process(self.proc.pid).children() if p.name() == name]
        assert len(found) == 1, found
        return found[0]


async def _connect(dsn: str, timeout: float = 20) -> asyncpg.Connection:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await asyncpg.connect(dsn)
        except (OSError, asyncpg.PostgresError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def test_up_restarts_killed_valkey_and_postgres_under_load(data_dir: Path) -> None:
    up = Up(data_dir)
    try:
        asyncio.run(_scenario(up))
    finally:
        up.proc.send_signal(signal.SIGTERM)
        try:
            assert up.proc.wait(30) == 0, up.output()
        finally:
            up.proc.kill()


async def _scenario(up: Up) -> None:
    tracker, dsn = up.info["tracker"], up.info["database_url"]
    conn = await _connect(dsn)
    prog = await programme(conn)
    await conn.close()
    answered: list[str] = []
    statuses: list[int] = []
    stop = asyncio.Event()
    async with httpx.AsyncClient(base_url=tracker, timeout=10) as client:
        while (first := await client.get(f"/c/{prog.code}", headers=new_visitor(0))).status_code != 302:
            await asyncio.sleep(0.05)  # the tracker loads the new link within a second (NOTIFY or polling)
        answered.append(parse_qs(urlsplit(first.headers["location"]).query)["cid"][0])

        async def visitor(n: int) -> None:
            i = 0
            while not stop.is_set():
                response = await client.get(f"/c/{prog.code}", headers=new_visitor((n << 13) + 1 + i % 8000))
                statuses.append(response.status_code)
                if response.status_code == 302:
                    answered.append(parse_qs(urlsplit(response.headers["location"]).query)["cid"][0])
                i += 1
                await asyncio.sleep(0.01)

        load = [asyncio.create_task(visitor(n)) for n in range(VISITORS)]
        await asyncio.sleep(1.0)

        # Valkey: killed, the tracker notices and spools, says it is degraded, and recovers by itself.
        valkey = up.server("valkey-server")
        mark = len(up.lines)
        valkey.kill()
        degraded: list[dict[str, object]] = []
        gauges: list[str] = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not (degraded and gauges):
            ready = await client.get("/readyz")
            if ready.status_code == 200 and ready.json()["degraded"]:
                degraded.append(ready.json())
                metrics = (await client.get("/metrics", headers=METRICS_AUTH)).text.splitlines()
                gauges += [line for line in metrics if line == "clickmint_degraded 1.0"]
            await asyncio.sleep(0.02)
        died = up.wait_for(
            f"embedded valkey (pid {valkey.pid}) exited with status -9 (killed by SIGKILL); restarting it in", 5, mark
        )
        up.wait_for("valkey is back on port", 15, died)
        up.wait_for("redis is back", 15, mark)  # the tracker reconnected by itself
        await _until_recovered(client)

        # PostgreSQL: killed; clicks go on (the tracker never reads it), ingest waits and resumes.
        postgres = up.server("postgres")
        mark = len(up.lines)
        postgres.kill()
        died = up.wait_for(
            f"embedded postgres (pid {postgres.pid}) exited with status -9 (killed by SIGKILL); restarting it in",
            5,
            mark,
        )
        up.wait_for("postgres is back on port", 30, died)
        await _portal_answers(up.info["portal"], dsn, prog.merchant_id)
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*load)
        await _until_recovered(client)

    assert set(statuses) == {302}, "every click was answered normally through both outages"
    assert degraded and degraded[0]["ready"] is True and degraded[0]["redis"] is False, degraded
    assert gauges, "/metrics said clickmint_degraded 1 while Valkey was away"
    conn = await _connect(dsn)
    try:
        deadline = time.monotonic() + 30
        while await conn.fetchval("SELECT count(*) FROM events WHERE type = 'click'") < len(answered):
            assert time.monotonic() < deadline, "clicks did not all reach PostgreSQL:\n" + up.output()
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.5)  # would a click be stored twice, it would be by now
        stored = [r["click_id"] for r in await conn.fetch("SELECT click_id FROM events WHERE type = 'click'")]
    finally:
        await conn.close()
    print(f"\nup heals: {len(answered)} clicks answered through a Valkey and a PostgreSQL kill -9")
    assert len(stored) == len(set(stored)), "no click stored twice"
    assert len(answered) == len(set(answered))
    assert sorted(stored) == sorted(answered), "every answered click stored, and nothing else"


async def _until_recovered(client: httpx.AsyncClient, timeout: float = 20) -> None:
    """Until /readyz says Redis is back and nothing is left in the spool."""
    deadline = time.monotonic() + timeout
    while True:
        body = (await client.get("/readyz")).json()
        spool = [
            line
            for line in (await client.get("/metrics", headers=METRICS_AUTH)).text.splitlines()
            if line.startswith("clickmint_spool_bytes ")
        ]
        if not body["degraded"] and spool == ["clickmint_spool_bytes 0.0"]:
            return
        assert time.monotonic() < deadline, f"the tracker did not recover: {body} {spool}"
        await asyncio.sleep(0.1)


async def _portal_answers(portal: str, dsn: str, merchant_id: int, timeout: float = 10) -> None:
    """The portal's merchant page, read from PostgreSQL, answers again after the restart without a human step."""
    conn = await _connect(dsn)
    try:
        slug = await conn.fetchval("SELECT slug FROM merchants WHERE id = $1", merchant_id)
    finally:
        await conn.close()
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(base_url=portal, timeout=5) as client:
        while (status := (await client.get(f"/m/{slug}")).status_code) != 200:
            assert time.monotonic() < deadline, f"the portal answers {status} after PostgreSQL came back"
            await asyncio.sleep(0.2)
