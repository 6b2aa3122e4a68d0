"""The only module of the tracker that speaks to Redis: raw RESP pipelines over one asyncio connection.

Redis key layout (PREFIX is CLICKMINT_KEY_PREFIX, "cm" by default):

    {PREFIX}:events:{N}          stream, N in 0..shards-1; one entry per event, field "d" = orjson payload.
                                 A click or view the tracker takes for a person's also has field "b" = 1 or
                                 0: a burst or not, decided by Redis as it appends the entry (ingest then
                                 records a burst as bot "burst", never unique). Such a click also has "u" =
                                 1 or 0: unique or not, decided by the same script; for a capped click on a
                                 single Redis also "c" = 1 or 0: within its caps or over cap (ingest applies
                                 "c" = 0 as the tracker does: over_cap, refusal over_cap, no click id). The
                                 {N} hash tag lets each shard live on its own node.
    {PREFIX}:uniq:{N}:L:visitor  string, set NX with the offer's window as TTL, by the same script that
                                 appends the click to shard N (same hash tag, same Cluster slot): the click
                                 of this visitor on link L is unique when the SET succeeds.
    {PREFIX}:burst:address       list of the times (ms, Redis's clock) of the address's last LIMIT + 1 hits,
                                 newest first, expiring WINDOW_S after the last (CLICKMINT_BURST_LIMIT and
                                 _WINDOW_S): counted by the script that appends each hit, whatever its shard.
                                 On a Redis Cluster {PREFIX}:burst:{N}:address instead, in the slot of the
                                 stream it is appended to: there an address's hits are counted per shard.
    {PREFIX}:cap:{o<offer>}:...  integer counters of the caps of one offer (offer-wide and per partner,
                                 daily and lifetime), checked and incremented atomically by one script.
    {PREFIX}:seen:{o<offer>}:... postback nonces, SET NX with a TTL, so a signed postback is used once.

"address" is a keyed hash of the visitor's address (IPv6: its /64), never the address itself.

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

# The burst rule, shared by the scripts below: count a hit of the address whose list is `key` and say
# whether it is a burst, i.e. whether the address already made `limit` hits in the `window_ms` before it
# (its hit `limit` places back is less than window_ms old). Redis's clock, so every tracker agrees; the
# list keeps limit + 1 times, so a burst of any length costs the same few commands per hit.
BURST_FUNCTION = b"""
local function burst(key, limit, window_ms)
  local time = redis.call('TIME')
  local now = time[1] * 1000 + math.floor(time[2] / 1000)  -- an integer: passed on as its digits
  local n = redis.call('LPUSH', key, now)
  redis.call('PEXPIRE', key, window_ms)
  if n <= limit then return false end
  local before = tonumber(redis.call('LINDEX', key, limit))
  redis.call('LTRIM', key, 0, limit)
  return now - before < window_ms
end
"""

# KEYS: the address's burst list, the stream; ARGV: the burst limit (hits), its window (ms), the payload.
# A view: counts the hit and appends the event with the verdict; returns 1 (a burst) or 0.
BURST_XADD = (
    BURST_FUNCTION
    + b"""
local b = burst(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
redis.call('XADD', KEYS[2], '*', 'd', ARGV[3], 'b', b and '1' or '0')
return b and 1 or 0
"""
)
BURST_XADD_SHA = hashlib.sha1(BURST_XADD).hexdigest().encode()

# KEYS: the uniqueness key, the burst list, the stream; ARGV: the uniqueness window (s), the burst limit and
# window (ms), the payload. One round trip counts the click's hit, decides its uniqueness (a burst is never
# unique and takes no uniqueness) and appends it with both verdicts; returns 1 (a burst) or 0.
UNIQUE_XADD = (
    BURST_FUNCTION
    + b"""
local b = burst(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
local unique = not b and redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
redis.call('XADD', KEYS[3], '*', 'd', ARGV[4], 'u', unique and '1' or '0', 'b', b and '1' or '0')
return b and 1 or 0
"""
)
UNIQUE_XADD_SHA = hashlib.sha1(UNIQUE_XADD).hexdigest().encode()

# KEYS: the uniqueness key, the burst list, the stream, the cap counters; ARGV: the uniqueness window (s), the
# burst limit and window (ms), per counter its limit, TTL and increment, the payload last. One round trip
# counts the click's hit, checks and counts its caps (not for a burst: bots never use up a cap), decides its
# uniqueness and appends it with the three verdicts; returns 1 (within its caps) or 0 (over cap), plus 2 for
# a burst. Its keys live in different Cluster slots: on a Cluster the caps go in a round trip of their own.
CAPPED_UNIQUE_XADD = (
    CHECK_FUNCTION
    + BURST_FUNCTION
    + b"""
local b = burst(KEYS[2], tonumber(ARGV[2]), tonumber(ARGV[3]))
local within, unique = '1', false
if not b then
  within = capped(4, 4) and '1' or '0'
  unique = redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1])
end
redis.call('XADD', KEYS[3], '*', 'd', ARGV[#ARGV], 'u', unique and '1' or '0', 'c', within, 'b', b and '1' or '0')
return tonumber(within) + (b and 2 or 0)
"""
)
CAPPED_UNIQUE_XADD_SHA = hashlib.sha1(CAPPED_UNIQUE_XADD).hexdigest().encode()
SCRIPTS = (BURST_XADD, UNIQUE_XADD, CAPPED_UNIQUE_XADD)  # loaded at every connect


class RedisUnavailable(ConnectionError):
    """The connection is down or the server answered too slowly; callers fall back to the spool."""


def stream_key(prefix: str, shard: int) -> bytes:
    return f"{prefix}:events:{{{shard}}}".encode()


def pack(*args: str | bytes | int) -> bytes:
    """One command in RESP, ready to be written."""
    return hiredis.pack_command(args)  # type: ignore[no-any-return]


# The commands of every event, packed by hand: the bytes pack() makes, at a quarter of its cost.
_XADD_HEAD = b"*5\r\n$4\r\nXADD\r\n"
_XADD_FIELD = b"\r\n$1\r\n*\r\n$1\r\nd\r\n"
_BURST_XADD_HEAD = b"*8\r\n$7\r\nEVALSHA\r\n$40\r\n" + BURST_XADD_SHA + b"\r\n$1\r\n2\r\n"
_UNIQUE_XADD_HEAD = b"*10\r\n$7\r\nEVALSHA\r\n$40\r\n" + UNIQUE_XADD_SHA + b"\r\n$1\r\n3\r\n"


def xadd_command(stream: bytes, payload: bytes) -> bytes:
    """XADD stream * d payload."""
    return b"%s$%d\r\n%s%s$%d\r\n%s\r\n" % (_XADD_HEAD, len(stream), stream, _XADD_FIELD, len(payload), payload)


def burst_args(limit: int, window_s: int) -> bytes:
    """The burst limit (hits) and window (converted to ms) as the scripts take them: two packed arguments."""
    hits, window_ms = b"%d" % limit, b"%d" % (window_s * 1000)
    return b"$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(hits), hits, len(window_ms), window_ms)


def burst_xadd_command(burst_key: bytes, stream: bytes, args: bytes, payload: bytes) -> bytes:
    """EVALSHA of BURST_XADD: count the hit of a view's address and append the view with the verdict."""
    return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s$%d\r\n%s\r\n" % (
        _BURST_XADD_HEAD,
        len(burst_key),
        burst_key,
        len(stream),
        stream,
        args,
        len(payload),
        payload,
    )


def unique_xadd_command(
    unique_key: bytes, burst_key: bytes, stream: bytes, window_s: int, args: bytes, payload: bytes
) -> bytes:
    """EVALSHA of UNIQUE_XADD: count the click's hit, decide its uniqueness and append it in one call."""
    middle = _MIDDLES.get((stream, window_s, args))
    if middle is None:  # stream, window and burst arguments, packed once per shard and window
        window = b"%d" % window_s
        middle = _MIDDLES[stream, window_s, args] = b"$%d\r\n%s\r\n$%d\r\n%s\r\n%s" % (
            len(stream),
            stream,
            len(window),
            window,
            args,
        )
    return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s$%d\r\n%s\r\n" % (
        _UNIQUE_XADD_HEAD,
        len(unique_key),
        unique_key,
        len(burst_key),
        burst_key,
        middle,
        len(payload),
        payload,
    )


_MIDDLES: dict[tuple[bytes, int, bytes], bytes] = {}


def capped_unique_xadd_parts(
    stream: bytes, window_s: int, burst: tuple[int, int], keys: Sequence[str], args: Sequence[int]
) -> tuple[bytes, bytes]:
    """The packed CAPPED_UNIQUE_XADD call of one link's clicks around the visitor's key, the address's burst
    list and the payload. `burst`: the limit (hits) and window (s).

    Everything but those three is the same for every click of a link all day, so it is packed once.
    """
    limit, window = burst
    blank = b"$0\r\n\r\n"
    before = pack(
        b"EVALSHA",
        CAPPED_UNIQUE_XADD_SHA,
        3 + len(keys),
        b"",
        b"",
        stream,
        *keys,
        window_s,
        limit,
        window * 1000,
        *args,
        b"",
    )
    head, _, rest = before.partition(blank)  # the count of arguments, EVALSHA, its SHA, the number of keys
    after = rest[
        len(blank) : -len(blank)
    ]  # the stream, the counters, the window, the burst's and the counters' arguments
    return head, after


def capped_unique_xadd_command(
    unique_key: bytes, burst_key: bytes, parts: tuple[bytes, bytes], payload: bytes
) -> bytes:
    """EVALSHA of CAPPED_UNIQUE_XADD for one click, from its link's parts."""
    return b"%s$%d\r\n%s\r\n$%d\r\n%s\r\n%s$%d\r\n%s\r\n" % (
        parts[0],
        len(unique_key),
        unique_key,
        len(burst_key),
        burst_key,
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
