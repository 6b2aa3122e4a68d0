"""`python -m loadtests.bench click`: the click's own CPU, in process, against the floor's, without HTTP.

The tracker bench measures the whole worker (uvicorn's parsing and sending, the sockets, the click); this one
calls the ASGI apps directly, so what it measures is the app alone: tracker.app (everything on, as the tracker
bench's click: caps, GeoIP, unique and burst checks, one X-Forwarded-For per request from a new visitor) and
loadtests.floor (one event recorded through the same Recorder, nothing else), each driven by --concurrency
coroutines, on real Valkey and PostgreSQL, this process pinned to the first core. The difference is what the
click's logic costs above recording an event. CPU time is this process's (user + system, the Redis writes
included), so it is as noisy as the machine; for a figure that load cannot move, run it twice under
`valgrind --tool=callgrind` with different --clicks and divide the difference in instructions by the
difference in clicks (loadtests/README.md). The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loadtests import floor
from loadtests.servers import Servers, delete_keys, seed_link, unseed_link
from loadtests.tracker_bench import KEY_PREFIX, _country_db, _set_caps, _tracker_env
from loadtests.traffic import BROWSER_UA

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]
TRACKER_PORT = 18000  # settings want a port; nothing listens on it


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench click", description=__doc__.split("\n")[0])
    parser.add_argument("--clicks", type=int, default=20_000, help="clicks measured per run and app (20000)")
    parser.add_argument("--runs", type=int, default=3, help="runs per app, interleaved; the best is reported (3)")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight, as connections (64)")
    parser.add_argument("--warmup", type=int, default=3_200, help="clicks before the measured runs (3200)")
    parser.add_argument(
        "--app", choices=("both", "click", "floor"), default="both", help="measure one app only (for callgrind)"
    )
    return parser


def run(argv: list[str]) -> int:
    """The benchmark's entry point for loadtests.bench."""
    args = _parser().parse_args(argv)
    servers = Servers.open()
    seeded = None
    try:
        seeded = asyncio.run(seed_link(servers.database_url))
        asyncio.run(_set_caps(servers.database_url, seeded.offer_id))
        env = _tracker_env(servers, TRACKER_PORT)
        env["CLICKMINT_GEOIP_DB"] = _country_db(servers.base / "country.mmdb")
        env["CLICKMINT_METRICS_PORT"] = "0"
        env["CLICKMINT_REDIS_BUDGET_MS"] = "5000"  # a slow run (callgrind) must not measure the spool instead
        os.environ.update(env)
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[0]})  # after the servers started: they keep the other core
        figures = _with_uvloop(_measure(args, f"/c/{seeded.code}"))
    finally:
        if servers.valkey is None:  # a configured Redis: its keys under the bench's prefix go
            delete_keys(servers.redis_url, KEY_PREFIX)
        if servers.postgres is None and seeded is not None:
            asyncio.run(unseed_link(servers.database_url, seeded))
        servers.close()
    click, base = figures["click_cpu_us"], figures["floor_cpu_us"]
    print(
        f"click benchmark, in process (no HTTP server), {args.concurrency} in flight, best of {args.runs} x "
        f"{figures['clicks']:,} clicks"
    )
    if click is not None:
        print(f"  tracker click, everything on   {click:7.1f} µs CPU a click (spooled: {figures['spooled']})")
    if base is not None:
        print(f"  floor (one event recorded)     {base:7.1f} µs CPU a request")
    if click is not None and base is not None:
        figures["logic_cpu_us"] = round(click - base, 1)
        print(f"  the click's logic above the floor: {click - base:.1f} µs")
    print(json.dumps({"bench": "click", **figures}))
    return 0


async def _measure(args: argparse.Namespace, path: str) -> dict[str, Any]:
    from tracker.app import create_app

    tracker = create_app()
    per = max(1, args.clicks // args.concurrency)
    best: dict[str, float] = {}
    async with tracker.lifespan(tracker.cold):
        floor_app = _Lifespan(floor.app)
        await floor_app.start()
        try:
            apps: dict[str, App] = {"click": tracker, "floor": floor.app}
            if args.app != "both":
                apps = {args.app: apps[args.app]}
            for app in apps.values():
                await _drive(app, path, args.concurrency, max(1, args.warmup // args.concurrency), 0)
            for n in range(args.runs):
                for name, app in apps.items():
                    started = time.process_time()
                    await _drive(app, path, args.concurrency, per, (n + 1) << 20)
                    cost = (time.process_time() - started) / (per * args.concurrency) * 1e6
                    best[name] = min(best.get(name, cost), cost)
        finally:
            await floor_app.stop()
        spooled = tracker.recorder.stats.events_spooled
    return {
        "clicks": per * args.concurrency,
        "click_cpu_us": round(best["click"], 1) if "click" in best else None,
        "floor_cpu_us": round(best["floor"], 1) if "floor" in best else None,
        "spooled": spooled,
    }


def _with_uvloop(main: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """On uvloop when installed, as uvicorn runs the tracker."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)  # type: ignore[arg-type]
    return uvloop.run(main)  # type: ignore[no-any-return]


async def _drive(app: App, path: str, concurrency: int, per: int, first: int) -> None:
    """`concurrency` coroutines, each sending `per` requests one after the other, from new visitors."""
    ua = BROWSER_UA.encode()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 302:
            raise RuntimeError(f"{path} answered {message['status']}")

    async def one(start: int) -> None:
        for k in range(start, start + per):
            address = f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}".encode()
            scope = {
                "type": "http",
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": path,
                "query_string": b"sub1=x",
                "client": ("127.0.0.1", 50000),
                "headers": [
                    (b"host", b"127.0.0.1:8000"),
                    (b"connection", b"keep-alive"),
                    (b"user-agent", ua),
                    (b"accept", b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                    (b"referer", b"https://deals.example.net/spring-sale"),
                    (b"accept-encoding", b"gzip, deflate, br"),
                    (b"accept-language", b"en-US,en;q=0.9"),
                    (b"x-forwarded-for", address),
                ],
            }
            await app(scope, receive, send)

    await asyncio.gather(*(one(first + i * per) for i in range(concurrency)))


class _Lifespan:
    """Runs an ASGI app's lifespan protocol by hand (the floor starts its Recorder there)."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self.app({"type": "lifespan"}, self._inbox.get, self._outbox.put))
        await self._inbox.put({"type": "lifespan.startup"})
        await self._outbox.get()

    async def stop(self) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._outbox.get()
        if self._task is not None:
            await self._task
