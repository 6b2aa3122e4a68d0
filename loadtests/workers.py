"""One uvicorn worker pinned to one core, and what it costs while a generator drives it (CPU, RSS).

The worker is uvicorn itself (no --workers: a single process, so its pid is the one serving), with
the flags `clickmint up` uses, started with PR_SET_PDEATHSIG so it never outlives the benchmark.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clickmint.embedded import child_preexec
from loadtests.generators import REPO

try:
    import psutil
except ImportError:  # psutil comes with the test extra; without it RSS and CPU are not reported
    psutil = None

START_TIMEOUT_S = 30.0


class Worker:
    """A uvicorn process serving `app` on 127.0.0.1:port, pinned to `cpus`."""

    def __init__(self, app: str, port: int, env: dict[str, str], cpus: set[int], log: Path, factory: bool) -> None:
        self.app = app
        self.port = port
        self.log = log
        cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
        cmd += ["--no-access-log", "--no-proxy-headers", "--log-level", "warning", "--timeout-graceful-shutdown", "5"]
        if factory:
            cmd.append("--factory")
        die_with_us = child_preexec(signal.SIGTERM)

        def _preexec() -> None:
            die_with_us()
            os.sched_setaffinity(0, cpus)

        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, preexec_fn=_preexec
            )
        self.ps = psutil.Process(self.proc.pid) if psutil else None

    def wait_ready(self, path: str, expect: int = 200, timeout: float = START_TIMEOUT_S) -> None:
        """Until GET path answers `expect` (the tracker's /readyz: 200 once configuration and Redis are there)."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.app} exited with {self.proc.returncode}; log {self.log}:\n{self.tail()}")
            try:
                status, _, body = self.get(path)
                if status == expect:
                    return
                last = f"{status} {body[:200]!r}"
            except OSError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise RuntimeError(f"{self.app} not ready within {timeout:.0f}s ({last}); log {self.log}:\n{self.tail()}")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Sampler:
    """CPU of some processes and of each core, and the worker's peak RSS, over one measured run."""

    def __init__(self, worker: Worker, others: dict[str, int]) -> None:
        self.worker = worker
        self.procs: dict[str, Any] = {}
        if psutil is not None and worker.ps is not None:
            self.procs = {"server": worker.ps, **{name: psutil.Process(pid) for name, pid in others.items()}}
        self.rss_peak = 0
        self._cpu0: dict[str, float] = {}
        self._cores0: list[Any] = []
        self._t0 = 0.0

    def __enter__(self) -> Sampler:
        self._t0 = time.monotonic()
        self._cpu0 = {name: _cpu(p) for name, p in self.procs.items()}
        self._cores0 = psutil.cpu_times(percpu=True) if psutil else []
        self.tick()
        return self

    def tick(self) -> None:
        if self.worker.ps is not None:
            self.rss_peak = max(self.rss_peak, self.worker.ps.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self.tick()
        wall = time.monotonic() - self._t0
        self.cpu = {name: (_cpu(p) - self._cpu0[name]) / wall for name, p in self.procs.items()}
        self.cores: list[float] = []  # share of each core busy (any process)
        self.steal: list[float] = []  # share of each core the hypervisor gave to someone else
        if psutil is not None:
            for before, after in zip(self._cores0, psutil.cpu_times(percpu=True), strict=True):
                total = sum(after) - sum(before)
                idle = (after.idle + after.iowait) - (before.idle + before.iowait)
                stolen = getattr(after, "steal", 0.0) - getattr(before, "steal", 0.0)
                self.cores.append(1 - (idle + stolen) / total if total > 0 else 0.0)
                self.steal.append(stolen / total if total > 0 else 0.0)


def _cpu(proc: Any) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)
