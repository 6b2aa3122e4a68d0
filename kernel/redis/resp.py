"""Raw RESP pipelines over one asyncio connection: the client of the measured hot paths.

redis-py spends ~22 µs of CPU per command in a pipeline; packing with hiredis and parsing with its
Reader costs a few, which is why the tracker's appends and ingest's reads and acks speak RESP here.
A Redis Cluster is served by kernel/redis/cluster.py on top of this connection.
"""

from __future__ import annotations

import asyncio
import select
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

DEFAULT_CONNECT_TIMEOUT_S = 2.0


class RedisUnavailable(ConnectionError):
    """The connection is down or the server answered too slowly; callers fall back to the spool."""


# hiredis's stub types pack_command's argument as a 1-tuple; it takes any number of arguments.
_pack_command = cast(Callable[[tuple[str | bytes | int, ...]], bytes], hiredis.pack_command)


def pack(*args: str | bytes | int) -> bytes:
    """One command in RESP, ready to be written."""
    return _pack_command(args)


class _Protocol(asyncio.Protocol):
    """Feeds bytes to a hiredis Reader and resolves waiters in FIFO order, one per pipeline."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(notEnoughData=Ellipsis)
        self.transport: asyncio.Transport | None = None
        self.waiters: deque[tuple[asyncio.Future[list[Any]], int, list[Any]]] = deque()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while waiters:
            future, expected, replies = waiters[0]
            while len(replies) < expected:
                reply = self.reader.gets()
                if reply is Ellipsis:
                    return
                replies.append(reply)
            waiters.popleft()
            if not future.done():
                future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = RedisUnavailable(f"connection lost: {exc}" if exc else "connection closed")
        while self.waiters:
            future = self.waiters.popleft()[0]
            if not future.done():
                future.set_exception(error)
        if not self.closed.done():
            self.closed.set_result(None)


class _Late(Exception):
    """The replies did not come within the budget."""


def _expire(future: asyncio.Future[list[Any]], protocol: _Protocol) -> None:
    """The budget's timer: a timer on the reply future itself (wait_for's work, without its extra future).

    A busy event loop must not pass for a slow Redis. uvloop runs due timers before it polls the
    sockets, so after a long stretch of work (a burst of requests parsed in one poll) the timer fires
    while the reply already waits, unread, in the socket; spooling then would add load to a loop that
    is already behind. So when the socket has something to read, the verdict waits for the loop's next
    poll (this callback, then the one `call_soon` schedules, run on either side of it); when it has
    nothing, Redis has not answered and the batch is late now.
    """
    if future.done():
        return
    if _readable(protocol):
        future.get_loop().call_soon(_expire_after_poll, future, True)
    else:
        future.set_exception(_Late())


def _expire_after_poll(future: asyncio.Future[list[Any]], first: bool) -> None:
    if not future.done():
        if first:
            future.get_loop().call_soon(_expire_after_poll, future, False)
        else:
            future.set_exception(_Late())


def _readable(protocol: _Protocol) -> bool:
    """Whether the connection's socket holds bytes not read yet (a zero-timeout poll; only on a budget's expiry)."""
    transport = protocol.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return False


def tls_context(query: str) -> ssl.SSLContext:
    """The TLS context of a rediss:// URL, read from the query parameters redis-py takes for the same URL:
    ssl_ca_certs (a CA bundle; default: the system's), ssl_certfile and ssl_keyfile (a client certificate),
    ssl_cert_reqs=none (no verification: tests only) and ssl_check_hostname=false."""
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    context = ssl.create_default_context(cafile=params.get("ssl_ca_certs"))
    if params.get("ssl_certfile"):
        context.load_cert_chain(params["ssl_certfile"], params.get("ssl_keyfile"))
    if params.get("ssl_check_hostname", "").lower() == "false":
        context.check_hostname = False
    if params.get("ssl_cert_reqs", "").lower() == "none":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class RespConnection:
    """One pipelined connection; `execute` writes a batch of packed commands and awaits all replies."""

    def __init__(self, url: str, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"a Redis URL is redis://, rediss:// (TLS) or unix://, not {parts.scheme}://")
        self._ssl = tls_context(parts.query) if parts.scheme == "rediss" else None
        self._unix = parts.path if parts.scheme == "unix" else None
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 6379
        self._password = unquote(parts.password) if parts.password else None
        self._user = unquote(parts.username) if parts.username else None
        self._db = int(parts.path.strip("/") or 0) if parts.scheme != "unix" else 0
        self._timeout = connect_timeout
        self._protocol: _Protocol | None = None

    @property
    def connected(self) -> bool:
        return self._protocol is not None and self._protocol.transport is not None

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._unix:
                coro = loop.create_unix_connection(_Protocol, self._unix)
            else:
                coro = loop.create_connection(_Protocol, self._host, self._port, ssl=self._ssl)
            _, protocol = await asyncio.wait_for(coro, self._timeout)
        except (OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"cannot connect to Redis: {exc}") from exc
        self._protocol = protocol
        setup: list[bytes] = []
        if self._password:
            setup.append(pack("AUTH", self._user, self._password) if self._user else pack("AUTH", self._password))
        if self._db:
            setup.append(pack("SELECT", self._db))
        if setup:
            for reply in await self.execute(setup, timeout=self._timeout):
                if isinstance(reply, hiredis.ReplyError):
                    await self.close()
                    raise RedisUnavailable(f"Redis refused the connection set-up: {reply}")

    async def execute(self, commands: Sequence[bytes], timeout: float | None = None) -> list[Any]:
        """Write the commands in one go and return their replies (errors as hiredis.ReplyError values)."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            raise RedisUnavailable("not connected")
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.waiters.append((future, len(commands), []))
        protocol.transport.write(b"".join(commands))
        if timeout is None:
            return await future
        timer = asyncio.get_running_loop().call_later(timeout, _expire, future, protocol)
        try:
            return await future
        except _Late:
            # The replies may still come; the stream stays consistent but this connection's order is lost.
            await self.close()
            raise RedisUnavailable(f"Redis did not answer within {timeout * 1000:.0f} ms") from None
        finally:
            timer.cancel()

    async def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
            await asyncio.shield(protocol.closed)
