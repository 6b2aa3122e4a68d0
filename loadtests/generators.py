"""Load generators as child processes: wrk when installed, else `python -m loadtests.loadgen`.

A generator runs on the cores given (the side core, with Redis) and returns one dict of figures:
rps, p50_ms, p90_ms, p99_ms, max_ms, errors, plus the CPU it used, so a run that was limited by its
own generator says so. wrk has no fixed-rate mode (wrk2 is not packaged), so paced runs always use
the Python generator in open loop.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickmint.embedded import child_preexec
from loadtests.traffic import Traffic

REPO = Path(__file__).resolve().parent.parent
_WRK_MARK = "CLICKMINT_WRK "

# wrk's Lua: the same requests as traffic.Traffic builds, and a JSON summary of exact percentiles.
_WRK_SCRIPT = """
local prefix = %(prefix)s
local suffix = %(suffix)s
local visitors = %(visitors)d
local n = 0
local floor = math.floor
request = function()
  local k = n %% visitors
  n = n + 1
  return prefix .. "10." .. (floor(k / 65536) %% 256) .. "." .. (floor(k / 256) %% 256) .. "." .. (k %% 256) .. suffix
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n%(mark)s{"requests":%%d,"duration_us":%%d,"connect_errors":%%d,"read_errors":%%d,"write_errors":%%d,' ..
    '"status_errors":%%d,"timeouts":%%d,"p50_us":%%.1f,"p90_us":%%.1f,"p99_us":%%.1f,"p999_us":%%.1f,' ..
    '"max_us":%%.1f,"mean_us":%%.1f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
"""


def wrk_version() -> str | None:
    """wrk's version line when it is installed, else None."""
    path = shutil.which("wrk")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    first = (out.stdout or out.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else "wrk"


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n") + '"'


def _pinned(cpus: set[int]) -> Callable[[], None]:
    die_with_us = child_preexec(15)  # SIGTERM when the bench dies; own process group

    def _preexec() -> None:
        die_with_us()
        os.sched_setaffinity(0, cpus)

    return _preexec


def _run(cmd: list[str], cpus: set[int], timeout: float, on_tick: Callable[[], None] | None) -> tuple[str, float]:
    """Run a generator to completion; returns its stdout and the CPU seconds it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_pinned(cpus)
    )
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                out, err = proc.communicate(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"load generator did not finish within {timeout:.0f}s: {cmd[0]}") from None
                if on_tick is not None:
                    on_tick()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed ({proc.returncode}): {' '.join(cmd[:3])}\n{err[-2000:]}")
    return out, cpu


def run_wrk(
    traffic: Traffic, connections: int, duration: float, cpus: set[int], script_dir: Path, on_tick: Callable[[], None]
) -> dict[str, Any]:
    """Closed loop with wrk: one thread (the generator has one core), `connections` keep-alive connections."""
    script = script_dir / "clicks.lua"
    script.write_text(
        _WRK_SCRIPT
        % {
            "prefix": _lua_string(traffic.prefix),
            "suffix": _lua_string(traffic.suffix),
            "visitors": traffic.visitors,
            "mark": _WRK_MARK,
        }
    )
    url = f"http://{traffic.host}:{traffic.port}{traffic.path}"
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--timeout", "5s", "-s", str(script)]
    out, cpu = _run([*cmd, url], cpus, duration + 30, on_tick)
    line = next((x for x in out.splitlines() if x.startswith(_WRK_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out[-2000:]}")
    raw = json.loads(line[len(_WRK_MARK) :])
    seconds = raw["duration_us"] / 1e6
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {
        "mode": "closed",
        "requests": raw["requests"],
        "duration_s": seconds,
        "rps": raw["requests"] / seconds,
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "p999_ms": raw["p999_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
        "errors": errors,
        "connections": connections,
        "generator_cpu": cpu / seconds,
    }


def run_python(
    traffic: Traffic,
    mode: str,
    duration: float,
    cpus: set[int],
    on_tick: Callable[[], None],
    connections: int = 64,
    rate: float = 0.0,
) -> dict[str, Any]:
    """The Python generator in a child process: `closed` (N connections) or `paced` (open loop at `rate`)."""
    cmd = [sys.executable, "-m", "loadtests.loadgen", mode, *traffic.to_args()]
    cmd += ["--duration", str(duration), "--connections", str(connections)]
    if mode == "paced":
        cmd += ["--rate", f"{rate:.1f}"]
    out, cpu = _run(cmd, cpus, duration + 30, on_tick)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    result["generator_cpu"] = cpu / duration
    return result
