"""The Python load generator: keep-alive HTTP/1.1 connections on raw asyncio protocols, one process.

Two modes, printing one JSON object on stdout:

- `closed`: N connections, each sends its next request as soon as the previous answer is complete
  (what wrk does). Latency is send -> last byte. Gives the maximum rate.
- `paced`: open loop at a fixed rate, as wrk2 does: request k is due at t0 + k/rate whatever the
  server is doing. Every 1 ms tick sends the requests due within the next half tick, on an idle
  connection, else on a new one (up to --max-connections), else they queue. Latency runs from
  min(due time, send time) to the last byte, so time spent queued behind a slow server counts
  (no coordinated omission) and an early send is never credited.

Run as `python -m loadtests.loadgen closed|paced --host H --port P --path /c/x ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from loadtests.traffic import DEFAULT_VISITORS, Traffic

TICK_S = 0.001
LOOKAHEAD_S = TICK_S / 2
DRAIN_TIMEOUT_S = 2.0

_now = time.perf_counter


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, on_answer: Callable[[_Conn, int], None], on_lost: Callable[[_Conn], None]) -> None:
        self.on_answer = on_answer
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.started = 0.0  # when the latency clock of the request in flight started
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, started: float) -> None:
        self.started = started
        self.busy = True
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        if self.buf:  # the rest of a response that came in pieces
            self.buf += data
            data = bytes(self.buf)
            self.buf.clear()
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.buf += data
            return
        head = data[:end]
        at = head.find(b"\r\ncontent-length:")  # uvicorn writes header names in lower case
        if at < 0:
            head = head.lower()
            at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            stop = head.find(b"\r\n", at + 2)
            total = end + 4 + int(head[at + 17 : stop if stop >= 0 else len(head)])
        elif b"\r\ntransfer-encoding: chunked" in head:
            total = data.find(b"\r\n0\r\n\r\n", end) + 7  # the last-chunk marker
            if total < 7:
                self.buf += data
                return
        else:
            total = end + 4
        if len(data) < total:
            self.buf += data
            return
        if len(data) > total:  # more than one response: the server answered something we did not ask
            self.buf += data[total:]
        self.busy = False
        self.on_answer(self, int(data[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.on_lost(self)


class _Run:
    """Counters and latencies of one run; only requests answered inside the window are kept."""

    def __init__(self, traffic: Traffic) -> None:
        self.traffic = traffic
        self.prefix = traffic.prefix.encode("latin-1")
        self.suffix = traffic.suffix.encode("latin-1")
        self.n = 0
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.statuses: dict[int, int] = {}
        self.connect_errors = 0
        self.lost = 0
        self.window = (0.0, 0.0)
        self.conns: list[_Conn] = []
        self.peak_conns = 0
        self.tasks: set[asyncio.Future[None]] = set()  # connections being opened: keep a reference

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def next_request(self) -> bytes:
        i = self.n
        self.n = i + 1
        return self.prefix + self.traffic.visitor_ip(i).encode() + self.suffix

    def answered(self, conn: _Conn, status: int) -> bool:
        """Record an answer; False once the window is over (the caller then stops using the connection)."""
        now = _now()
        if now > self.window[1]:
            return False
        if conn.started >= self.window[0]:
            self.latencies.append(now - conn.started)
            self.statuses[status] = self.statuses.get(status, 0) + 1
        return True

    async def connect(self, factory: Callable[[], _Conn]) -> _Conn | None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(factory, self.traffic.host, self.traffic.port)
        except OSError:
            self.connect_errors += 1
            return None
        self.conns.append(conn)
        self.peak_conns = max(self.peak_conns, sum(1 for c in self.conns if c.transport is not None))
        return conn

    def close(self) -> None:
        for conn in self.conns:
            if conn.transport is not None:
                conn.transport.abort()

    def result(self, mode: str, duration: float, **extra: Any) -> dict[str, Any]:
        lat = sorted(self.latencies)
        lags = sorted(self.lags)
        answered = sum(self.statuses.values())
        ok = sum(n for status, n in self.statuses.items() if status < 400)
        return {
            "mode": mode,
            "requests": answered,
            "duration_s": duration,
            "rps": answered / duration,
            "p50_ms": percentile(lat, 50) * 1000,
            "p90_ms": percentile(lat, 90) * 1000,
            "p99_ms": percentile(lat, 99) * 1000,
            "p999_ms": percentile(lat, 99.9) * 1000,
            "max_ms": (lat[-1] if lat else 0.0) * 1000,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": len(lat) - ok + self.connect_errors,  # 4xx/5xx, refused connections, unanswered
            "connect_errors": self.connect_errors,
            "connections_lost": self.lost,
            "peak_connections": self.peak_conns,
            "dispatch_lag_p99_ms": percentile(lags, 99) * 1000,
            **extra,
        }


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
    return ordered[min(len(ordered), int(rank)) - 1]


async def closed(traffic: Traffic, connections: int, duration: float) -> dict[str, Any]:
    """N connections, back to back: the maximum rate the server sustains at that concurrency."""
    run = _Run(traffic)

    def on_answer(conn: _Conn, status: int) -> None:
        if run.answered(conn, status):
            conn.send(run.next_request(), _now())

    def on_lost(conn: _Conn) -> None:
        if conn.busy and _now() < run.window[1]:
            run.lost += 1
            run.spawn(reopen())

    async def reopen() -> None:
        conn = await run.connect(lambda: _Conn(on_answer, on_lost))
        if conn is not None:
            conn.send(run.next_request(), _now())

    conns = [await run.connect(lambda: _Conn(on_answer, on_lost)) for _ in range(connections)]
    start = _now()
    run.window = (start, start + duration)
    for conn in conns:
        if conn is not None:
            conn.send(run.next_request(), _now())
    await asyncio.sleep(duration)
    run.close()
    return run.result("closed", duration, connections=connections)


async def paced(
    traffic: Traffic, rate: float, duration: float, connections: int, max_connections: int
) -> dict[str, Any]:
    """Open loop at `rate` requests/s: latencies include any time a request waited for the server."""
    run = _Run(traffic)
    idle: list[_Conn] = []
    queued: deque[float] = deque()  # due times of requests waiting for a connection
    opening = 0

    def on_answer(conn: _Conn, status: int) -> None:
        if not run.answered(conn, status):
            return
        dispatch_on(conn)

    def on_lost(conn: _Conn) -> None:
        if conn in idle:
            idle.remove(conn)
        if conn.busy:
            run.lost += 1

    def dispatch_on(conn: _Conn) -> None:
        if queued:
            conn.send(run.next_request(), queued.popleft())
        else:
            idle.append(conn)

    async def grow() -> None:
        nonlocal opening
        try:
            conn = await run.connect(lambda: _Conn(on_answer, on_lost))
        finally:
            opening -= 1
        if conn is not None:
            dispatch_on(conn)

    for _ in range(connections):
        conn = await run.connect(lambda: _Conn(on_answer, on_lost))
        if conn is not None:
            idle.append(conn)
    total = int(rate * duration)
    t0 = _now() + TICK_S
    run.window = (t0, t0 + duration + DRAIN_TIMEOUT_S)
    issued = 0
    lags = run.lags
    while issued < total:
        now = _now()
        due = min(total, int((now + LOOKAHEAD_S - t0) * rate) + 1)
        while issued < due:
            at = t0 + issued / rate
            issued += 1
            if idle:
                lags.append(max(0.0, now - at))
                idle.pop().send(run.next_request(), min(at, now))
            else:
                queued.append(at)
                if opening + len(run.conns) < max_connections:
                    opening += 1  # counted now: the task runs only after this tick
                    run.spawn(grow())
        # Never less than a tick: a shorter sleep returns at once and the generator would spin on its core,
        # which it shares with Redis.
        await asyncio.sleep(max(TICK_S, t0 + issued / rate - LOOKAHEAD_S - _now()))
    deadline = _now() + DRAIN_TIMEOUT_S
    # Polling on purpose: the drain ends at a deadline whatever the server does.
    while (queued or any(c.busy for c in run.conns if c.transport is not None)) and _now() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(TICK_S)
    # Still unanswered at the deadline: counted with the time they have waited so far (a lower bound),
    # so a server that stops answering shows in the percentiles instead of vanishing from them.
    now = _now()
    waited = [now - at for at in queued] + [now - c.started for c in run.conns if c.busy and c.transport is not None]
    run.latencies.extend(waited)
    unanswered = len(waited)
    run.close()
    achieved = sum(run.statuses.values()) / duration
    return run.result(
        "paced", duration, target_rps=rate, achieved_rps=achieved, unanswered=unanswered, connections=connections
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("closed", "paced"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--visitors", type=int, default=DEFAULT_VISITORS)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, default=0.0, help="paced: requests per second")
    parser.add_argument("--max-connections", type=int, default=1024, help="paced: grow the pool up to this")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    traffic = Traffic(args.host, args.port, args.path, args.visitors)
    if args.mode == "paced" and args.rate <= 0:
        print("paced mode needs --rate > 0", file=sys.stderr)
        return 2
    loop_factory = None
    with contextlib.suppress(ImportError):
        import uvloop

        loop_factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if args.mode == "closed":
            result = runner.run(closed(traffic, args.connections, args.duration))
        else:
            result = runner.run(paced(traffic, args.rate, args.duration, args.connections, args.max_connections))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
