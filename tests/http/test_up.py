"""`clickmint up` as a user runs it: embedded servers, a demo click into PostgreSQL, kill -9 leaves nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from clickmint.embedded import pick_port

pytestmark = pytest.mark.timeout(180)


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKMINT_")}
    env.update(
        CLICKMINT_DATA_DIR=str(data_dir),
        CLICKMINT_TRACKER_PORT=str(pick_port(0)),
        CLICKMINT_PORTAL_PORT=str(pick_port(0)),
        CLICKMINT_TRACKER_WORKERS="1",
        CLICKMINT_SHARDS="2",
    )
    return env


def _descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def _names(procs: list[psutil.Process]) -> set[str]:
    names = set()
    for proc in procs:
        try:
            names.add(proc.name())
        except psutil.NoSuchProcess:
            pass
    return names


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="clickmint-up-"))
    os.chmod(base, 0o755)
    yield base / "data"
    subprocess.run(["rm", "-rf", str(base)], check=False)


def _start(env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "clickmint", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Seed a demo"):
            return proc, "".join(lines)
    proc.kill()
    raise AssertionError("clickmint up did not come up:\n" + "".join(lines))


def _db_count(env: dict[str, str], data_dir: Path) -> int:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import asyncio, asyncpg, json, sys\n"
            "info = json.load(open(sys.argv[1]))\n"
            "async def main():\n"
            "    c = await asyncpg.connect(info['database_url'])\n"
            "    print(await c.fetchval(\"SELECT count(*) FROM events WHERE type = 'click'\"))\n"
            "asyncio.run(main())",
            str(data_dir / "run.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


def _portal_shows_the_click(banner: str, demo: str) -> None:
    """The demo partner signs in to the portal `up` started and sees its click in today's stats."""
    portal = re.search(r"portal\s+(http://\S+)", banner).group(1)
    email, password = re.search(r"sign in as (alice@\S+)\s+password (\S+)", demo).groups()
    with urllib.request.urlopen(f"{portal}/m/demo-shop", timeout=5) as page:
        assert b"Demo Shop partner programme" in page.read()
    login = urllib.request.Request(
        f"{portal}/api/v1/auth/login",
        data=json.dumps({"email": email, "password": password}).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(login, timeout=10) as response:
        cookie = response.headers["set-cookie"].split(";")[0]
    clicks = 0
    for _ in range(50):
        stats = urllib.request.Request(f"{portal}/api/v1/partner/stats?range=today", headers={"cookie": cookie})
        with urllib.request.urlopen(stats, timeout=5) as response:
            totals = json.loads(response.read())["totals"]
        clicks = totals["clicks"] + totals["bots"]
        if clicks:
            break
        time.sleep(0.1)
    assert clicks == 1


def _redirected(opener: urllib.request.OpenerDirector, request: urllib.request.Request) -> None:
    try:
        opener.open(request, timeout=5)
        raise AssertionError("expected a redirect")
    except urllib.error.HTTPError as exc:
        assert exc.code == 302
        assert exc.headers["location"].startswith("https://shop.example.com/")


def test_up_demo_click_and_kill_9(data_dir: Path) -> None:
    env = _env(data_dir)
    started = time.monotonic()
    proc, banner = _start(env)
    try:
        assert "Clickmint is up" in banner, banner
        assert time.monotonic() - started < 30
        assert {"valkey-server", "postgres"} <= _names(_descendants(proc.pid))

        demo = subprocess.run(
            [sys.executable, "-m", "clickmint", "demo"], env=env, capture_output=True, text=True, timeout=60, check=True
        )
        urls = re.findall(r"(http://\S+/c/\S+)", demo.stdout)
        assert len(urls) == 4, demo.stdout
        request = urllib.request.Request(urls[0], headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"})

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args: object, **kwargs: object) -> None:
                return None

        opener = urllib.request.build_opener(NoRedirect)
        _redirected(opener, request)
        clicked = time.monotonic()
        while _db_count(env, data_dir) < 1:
            assert time.monotonic() - clicked < 5, "the click did not reach PostgreSQL"
            time.sleep(0.1)
        _portal_shows_the_click(banner, demo.stdout)
        family = _descendants(proc.pid)  # servers, tracker, ingest, portal and PostgreSQL's backends
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _, alive = psutil.wait_procs(family, timeout=20)
    assert alive == [], f"still running after kill -9 of clickmint up: {_names(alive)}"

    # A restart finds the data again: the click is still there. Now with two ingest processes, each on
    # half of the shards: clicks on every demo link (spread over the shards) all reach PostgreSQL.
    # SIGTERM stops the whole group cleanly.
    proc, banner = _start(env | {"CLICKMINT_INGEST_PROCESSES": "2"})
    try:
        assert "migrations applied now: none" in banner
        assert "(2 process(es))" in banner
        assert _db_count(env, data_dir) == 1
        family = _descendants(proc.pid)
        ingests = [p for p in family if p.cmdline()[-1:] == ["ingest"]]
        assert len(ingests) == 2, _names(family)
        for url in urls:
            _redirected(opener, urllib.request.Request(url, headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)"}))
        clicked = time.monotonic()
        while _db_count(env, data_dir) < 1 + len(urls):
            assert time.monotonic() - clicked < 5, "a click did not reach PostgreSQL"
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    assert psutil.wait_procs(family, timeout=20)[1] == []
