"""Real servers for the attack tests: the tracker and the portal under uvicorn on loopback, ingest running
beside them, and small HTTP servers standing in for a partner's endpoint or a service on the internal network."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import uvicorn

from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings
from clickmint.embedded import pick_port
from kernel.env import Env
from kernel.settings import Settings
from portal.app import build
from tests.portal.kit import portal_settings
from tracker.app import TrackerApp
from tracker.settings import TrackerSettings

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"


@contextlib.asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[uvicorn.Server]:
    """`app` under uvicorn on 127.0.0.1:port (its lifespan included) until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        await task


@dataclass
class Live:
    """A running tracker, portal and ingest on the test's servers."""

    core: Settings
    tracker_url: str
    portal_url: str
    metrics_port: int
    tracker: TrackerApp
    portal_app: Any

    @property
    def portal(self) -> Any:
        return self.portal_app.state.portal

    def client(self, **headers: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(headers={"user-agent": BROWSER_UA, **headers}, timeout=20)


@contextlib.asynccontextmanager
async def live(
    settings: Settings,
    *,
    tracker_env: dict[str, str] | None = None,
    portal_env: dict[str, str] | None = None,
    ingest: bool = True,
) -> AsyncIterator[Live]:
    tracker_port, portal_port, metrics_port = pick_port(0), pick_port(0), pick_port(0)
    core = dataclasses.replace(settings, tracker_port=tracker_port, portal_port=portal_port)
    tracker_url, portal_url = f"http://127.0.0.1:{tracker_port}", f"http://127.0.0.1:{portal_port}"
    tracker = TrackerApp(
        TrackerSettings.from_env(
            Env(
                {"CLICKMINT_REDIS_BUDGET_MS": "5000", "CLICKMINT_METRICS_PORT": str(metrics_port)} | (tracker_env or {})
            ),
            core=core,
        )
    )
    portal_app = build(
        portal_settings(
            core,
            CLICKMINT_TRACKER_PUBLIC_URL=tracker_url,
            CLICKMINT_PORTAL_PUBLIC_URL=portal_url,
            CLICKMINT_API_PER_MINUTE="100000",
            **(portal_env or {}),
        )
    )
    consumer = Ingest(BillingSettings.from_env(Env({}), core=core), derive=Deriver()) if ingest else None
    task = asyncio.create_task(consumer.run()) if consumer else None
    try:
        async with serve(tracker, tracker_port), serve(portal_app, portal_port):
            yield Live(core, tracker_url, portal_url, metrics_port, tracker, portal_app)
    finally:
        if consumer is not None and task is not None:
            consumer.stop()
            await task


async def until(check: Callable[[], Awaitable[Any] | Any], what: str, timeout: float = 15.0) -> Any:
    """Poll `check` (sync or async) until it gives something truthy; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still waiting for {what}")
        await asyncio.sleep(0.05)


async def scalar(conn: asyncpg.Connection, sql: str, *args: Any) -> Any:
    return await conn.fetchval(sql, *args)


@dataclass
class Seen:
    """One request a Target received: its request line and headers as sent."""

    line: str
    headers: dict[str, str]


@dataclass
class Target:
    """An HTTP/1.1 server on loopback standing in for a partner's endpoint or an internal service.

    Every request is recorded; it answers `status`, or holds the connection open until `release` is set
    when `hold` is true (a slow or hanging endpoint). `open` counts connections not yet answered."""

    status: int = 200
    hold: bool = False
    seen: list[Seen] = field(default_factory=list)
    open: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0
    tls: ssl.SSLContext | None = None
    _server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *rest = head.split("\r\n")
            headers = {k.lower(): v for k, v in (h.split(": ", 1) for h in rest if ": " in h)}
            self.seen.append(Seen(line, headers))
            self.arrived.set()
            if self.hold:  # until released, or until the client gives up and closes its side
                waits = [asyncio.ensure_future(self.release.wait()), asyncio.ensure_future(reader.read(1))]
                done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in pending:
                    task.cancel()
                if waits[0] not in done:
                    return
            writer.write(f"HTTP/1.1 {self.status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def __aenter__(self) -> Target:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        assert self._server is not None
        self._server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
