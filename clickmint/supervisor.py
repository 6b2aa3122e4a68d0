"""Runs the tracker, billing ingest and the portal as one group: restarted on a crash, stopped together."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from clickmint.embedded import child_preexec

log = logging.getLogger("clickmint.up")
MAX_RESTARTS = 5  # within RESTART_WINDOW_S; past that the whole group stops with a message
RESTART_WINDOW_S = 60.0
STOP_TIMEOUT_S = 15.0


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


class Supervisor:
    """Starts parts, watches them, and stops them all on SIGINT/SIGTERM or an unrecoverable crash."""

    def __init__(self, parts: list[Part]) -> None:
        self.parts = parts
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
            print(f"clickmint: {self.failure}", file=sys.stderr, flush=True)
            self._stopping = True
            return
        print(f"clickmint: {part.name} exited with status {code}; restarting it", file=sys.stderr, flush=True)
        time.sleep(min(0.2 * len(part.restarts), 2.0))
        part.start()

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
