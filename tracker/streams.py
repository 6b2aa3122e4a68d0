"""The only module of the tracker that speaks to Redis: raw RESP pipelines over one asyncio connection.

Redis key layout (PREFIX is CLICKMINT_KEY_PREFIX, "cm" by default):

    {PREFIX}:events:{N}          stream, N in 0..shards-1; one entry per event, field "d" = orjson payload,
                                 and for a click field "u" = 1 or 0: unique or not, decided by Redis as it
                                 appends the entry; for a capped click on a single Redis also field "c" =
                                 1 or 0: within its caps or over cap, decided by the same script (ingest
                                 applies "c" = 0 as the tracker does: over_cap, refusal over_cap, no
                                 click id). The {N} hash tag lets each shard live on its own node.
    {PREFIX}:uniq:{N}:L:visitor  string, set NX with the offer's window as TTL, by the same script that
                                 appends the click to shard N (same hash tag, same Cluster slot): the click
                                 of this visitor on link L is unique when the SET succeeds.
    {PREFIX}:cap:{o<offer>}:...  integer counters of the caps of one offer (offer-wide and per partner,
                                 daily and lifetime), checked and incremented atomically by one script.
    {PREFIX}:seen:{o<offer>}:... postback nonces, SET NX with a TTL, so a signed postback is used once.

redis-py spends ~22 µs of CPU per command in a pipeline; packing with hiredis and parsing with its
Reader costs a few, which is why the hot path does its own RESP here.
"""

from __future__ import annotations

import asyncio
import hashlib
import select
import ssl
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

from tracker.caps import CHECK_FUNCTION

DEFAULT_CONNECT_TIMEOUT_S = 2.0

# KEYS: the uniqueness key, the stream; ARGV: the uniqueness window (s), the payload. One round trip
# decides uniqueness and appends the click, atomically.
UNIQUE_XADD = b"""
local unique = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
return redis.call('XADD', KEYS[2], '*', 'd', ARGV[2], 'u', unique and '1' or '0')
"""
UNIQUE_XADD_SHA = hashlib.sha1(UNIQUE_XADD).hexdigest().encode()

# KEYS: the uniqueness key, the stream, the cap counters; ARGV: the uniqueness window (s), per counter
# its limit, TTL and increment, the payload last. One round trip checks and counts the click's caps,
# decides its uniqueness and appends it with both verdicts; returns 1 (within its caps) or 0 (over cap).
# Its keys live in different Cluster slots: on a Cluster the caps go in a round trip of their own.
CAPPED_UNIQUE_XADD = (
    CHECK_FUNCTION
    + b"""
local within = capped(3, 2) and '1' or '0'
local unique = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
redis.call('XADD', KEYS[2], '*', 'd', ARGV[#ARGV], 'u', unique and '1' or '0', 'c', within)
return tonumber(within)
"""
)
CAPPED_UNIQUE_XADD_SHA = hashlib.sha1(CAPPED_UNIQUE_XADD).hexdigest().encode()


class RedisUnavailable(ConnectionError):
    """The connection is down or the server answered too slowly; callers fall back to the spool."""


def stream_key(prefix: str, shard: int) -> bytes:
    return f"{prefix}:events:{{{shard}}}".encode()


def pack(*args: str | bytes | int) -> bytes:
    """One command in RESP, ready to be written."""
    return hiredis.pack_command(args)  # type: ignore[no-any-return]


# The two commands of every event, packed by hand: the bytes pack() makes, at a quarter of its cost.
_XADD_HEAD = b"*5\r\n$4\r\nXADD\r\n"
_XADD_FIELD = b"\r\n$1\r\n*\r\n$1\r\nd\r\n"
_UNIQUE_XADD_HEAD = b"*7\r\n$7\r\nEVALSHA\r\n$40\r\n" + UNIQUE_XADD_SHA + b"\r\n$1\r\n2\r\n"


def xadd_command(stream: bytes, payload: bytes) -> bytes:
    """XADD stream * d payload."""
    return b"%s$%d\r\n%s%s$%d\r\n%s\r\n" % (_XADD_HEAD, len(stream), stream, _XADD_FIELD, len(payload), payload)


def unique_xadd_command(unique_key: bytes, stream: bytes, window_s: int, payload: bytes) -> bytes:
    """EVALSHA of UNIQUE_XADD: decide the click's uniqueness and append it in one call."""
    middle = _MIDDLES.get((stream, window_s))
    if middle is None:  # stream and window, packed once per shard and window
        window = b"%d" % window_s
        middle = _MIDDLES[stream, window_s] = b"\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
            len(stream),
            stream,
            len(window),
            window,
        )
    head = _UNIQUE_XADD_HEAD
    return b"%s$%d\r\n%s%s$%d\r\n%s\r\n" % (head, len(unique_key), unique_key, middle, len(payload), payload)


_MIDDLES: dict[tuple[bytes, int], bytes] = {}


def capped_unique_xadd_parts(
    stream: bytes, window_s: int, keys: Sequence[str], args: Sequence[int]
) -> tuple[bytes, bytes]:
    """The packed CAPPED_UNIQUE_XADD call of one link's clicks around the visitor's key and the payload.

    Everything but those two is the same for every click of a link all day, so it is packed once.
    """
    before = pack(b"EVALSHA", CAPPED_UNIQUE_XADD_SHA, 2 + len(keys), b"", stream, *keys, window_s, *args, b"")
    blank = b"$0\r\n\r\n"
    head, _, rest = before.partition(blank)  # the count of arguments, EVALSHA, its SHA, the number of keys
    after = rest[: -len(blank)]  # the stream, the counters, the window and the counters' arguments
    return head, after


def capped_unique_xadd_command(unique_key: bytes, parts: tuple[bytes, bytes], payload: bytes) -> bytes:
    """EVALSHA of CAPPED_UNIQUE_XADD for one click, from its link's parts."""
    return b"%s$%d\r\n%s\r\n%s$%d\r\n%s\r\n" % (
        parts[0],
        len(unique_key),
        unique_key,
        parts[1],
        len(payload),
        payload,
    )


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
