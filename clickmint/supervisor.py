"""Runs the tracker, billing ingest and the portal as one group: restarted on a crash, stopped together.

It also keeps the embedded Valkey and PostgreSQL it was handed alive: a server that dies (a crash, an OOM
kill, a `kill -9`) is started again on the same port and data directory, after a backoff that grows with
each death in the last minute (0.5 s, 1 s, 2 s ... at most 30 s), and never given up on: while Valkey is
away the tracker answers from memory and spools, while PostgreSQL is away ingest waits, so stopping
everything would only lose more. Every death, restart and recovery is one log line (`clickmint.up`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clickmint.embedded import EmbeddedError, EmbeddedServer, child_preexec

log = logging.getLogger("clickmint.up")
MAX_RESTARTS = 5  # within RESTART_WINDOW_S; past that the whole group stops with a message
RESTART_WINDOW_S = 60.0
STOP_TIMEOUT_S = 15.0
SERVER_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0)  # by the number of deaths within RESTART_WINDOW_S


@dataclass
class Part:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, preexec_fn=child_preexec(signal.SIGTERM)
        )


@dataclass
class Keeper:
    """What the supervisor knows about one embedded server it restarts."""

    server: EmbeddedServer
    deaths: list[float] = field(default_factory=list)  # monotonic times, within RESTART_WINDOW_S
    down_since: float | None = None  # set from the death until the port answers again
    due: float | None = None  # when the next start is due, while one is waiting out its backoff


def _status(code: int | None) -> str:
    """How a child ended, in words ("exited with status" is what loadtests/capacity.py looks for)."""
    if code is not None and code < 0:
        try:
            return f"exited with status {code} (killed by {signal.Signals(-code).name})"
        except ValueError:
            return f"exited with status {code} (killed by signal {-code})"
    return f"exited with status {code}"


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.05):
            return True
    except OSError:
        return False


class Supervisor:
    """Starts parts, watches them and the embedded servers, and stops them all on SIGINT/SIGTERM or an
    unrecoverable crash of a part."""

    def __init__(self, parts: list[Part], servers: tuple[EmbeddedServer, ...] = ()) -> None:
        self.parts = parts
        self.keepers = [Keeper(server) for server in servers]
        self._stopping = False
        self.failure: str | None = None

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def run_with(self, on_started: Callable[[], None] | None = None) -> int:
        """Start every part, call `on_started` in a thread, and supervise until told to stop."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for part in self.parts:
                part.start()
            if on_started is not None:
                threading.Thread(target=on_started, name="announce", daemon=True).start()
            while not self._stopping:
                time.sleep(0.2)
                for keeper in self.keepers:
                    if not self._stopping:
                        self._heal(keeper)
                for part in self.parts:
                    if part.proc is not None and part.proc.poll() is not None and not self._stopping:
                        self._crashed(part)
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 1 if self.failure else 0

    def _crashed(self, part: Part) -> None:
        assert part.proc is not None
        code = part.proc.returncode
        now = time.monotonic()
        part.restarts = [t for t in part.restarts if now - t < RESTART_WINDOW_S] + [now]
        if len(part.restarts) > MAX_RESTARTS:
            self.failure = (
                f"{part.name} exited with status {code} {len(part.restarts)} times within "
                f"{RESTART_WINDOW_S:.0f}s; stopping everything"
            )
            log.error("%s", self.failure)
            self._stopping = True
            return
        log.warning("%s (pid %d) %s; restarting it", part.name, part.proc.pid, _status(code))
        time.sleep(min(0.2 * len(part.restarts), 2.0))
        part.start()

    def _heal(self, keeper: Keeper) -> None:
        """One look at an embedded server: note a death, start it again when its backoff is over, tell when
        it answers again. Never blocks: restarts happen on this (the main) thread, because a child's
        parent-death signal fires when the thread that forked it ends."""
        server = keeper.server
        now = time.monotonic()
        if keeper.due is not None:
            if now < keeper.due:
                return
            keeper.due = None
            try:
                server.restart()
            except (OSError, EmbeddedError) as exc:
                self._died(keeper, now, f"could not be started ({exc})")
                return
            assert server.proc is not None
            log.warning("%s restarted (pid %d) on port %d", server.name, server.proc.pid, server.port)
            return
        proc = server.proc
        if proc is None:
            return
        if proc.poll() is not None:
            self._died(keeper, now, f"(pid {proc.pid}) {_status(proc.returncode)}")
        elif keeper.down_since is not None and _listening(server.port):
            log.warning("%s is back on port %d after %.1fs down", server.name, server.port, now - keeper.down_since)
            keeper.down_since = None

    def _died(self, keeper: Keeper, now: float, how: str) -> None:
        keeper.deaths = [t for t in keeper.deaths if now - t < RESTART_WINDOW_S] + [now]
        if keeper.down_since is None:
            keeper.down_since = now
        delay = SERVER_BACKOFF_S[min(len(keeper.deaths), len(SERVER_BACKOFF_S)) - 1]
        keeper.due = now + delay
        server = keeper.server
        log.error(
            "embedded %s %s; restarting it in %.1fs (death %d within %.0fs; its log: %s)",
            server.name, how, delay, len(keeper.deaths), RESTART_WINDOW_S, server.log,
        )  # fmt: skip

    def stop(self) -> None:
        """SIGTERM to every part, then SIGKILL to what is still running after the timeout."""
        running = [p for p in self.parts if p.proc is not None and p.proc.poll() is None]
        for part in running:
            assert part.proc is not None
            part.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for part in running:
            assert part.proc is not None
            try:
                part.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", part.name)
                os.killpg(part.proc.pid, signal.SIGKILL)
                part.proc.wait()
