"""Runs measured phases against a worker: warm-up, one generator run, CPU/RSS sampling, sanity warnings.

Shared by the benchmarks that drive an HTTP worker: the caller says which generator (wrk or the
Python one, closed loop) and gets per-phase figures plus the warnings that make a figure suspect
(errors, a saturated generator, other processes or the hypervisor taking the server's core).
"""

from __future__ import annotations

import os
from typing import Any

from loadtests.generators import run_python, run_wrk, wrk_version
from loadtests.traffic import Traffic
from loadtests.workers import Sampler, Worker

SATURATED = 0.9  # a generator using this much of its core may be what limits the rate
NOISE = 0.05  # this much of the server core going elsewhere makes a figure suspect


class Runner:
    """Picks cores and the generator once; then `phase` runs warm-up + measurement and keeps warnings."""

    def __init__(self, generator: str, connections: int, duration: float, warmup: float) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.server_cpus = {cpus[0]}
        self.side_cpus = {cpus[1]} if len(cpus) > 1 else {cpus[0]}
        wrk = wrk_version() if generator in ("auto", "wrk") else None
        if generator == "wrk" and wrk is None:
            raise SystemExit("--generator wrk: wrk is not installed (apt-get install wrk)")
        self.wrk = wrk
        self.generator = wrk or "python-asyncio"
        self.connections = connections
        self.duration = duration
        self.warmup = warmup
        self.warnings: list[str] = []
        if len(cpus) < 2:
            self.warnings.append("one core only: server, Redis and generator share it")

    def drive(
        self, worker: Worker, traffic: Traffic, others: dict[str, int], duration: float, rate: float = 0.0
    ) -> dict[str, Any]:
        """One generator run: closed loop (rate 0) with the chosen generator, or paced with the Python one."""
        with Sampler(worker, others) as sampler:
            if rate:
                result = run_python(traffic, "paced", duration, self.side_cpus, sampler.tick, self.connections, rate)
            elif self.wrk:
                scripts = worker.log.parent
                result = run_wrk(traffic, self.connections, duration, self.side_cpus, scripts, sampler.tick)
            else:
                result = run_python(traffic, "closed", duration, self.side_cpus, sampler.tick, self.connections)
        result["rss_mb"] = sampler.rss_peak / 2**20
        result["cpu"] = sampler.cpu
        for name, share in sampler.cpu.items():
            result[f"cpu_{name}"] = share
        result.setdefault("cpu_server", 0.0)
        result.setdefault("cpu_valkey", 0.0)
        result["cores"] = sampler.cores
        result["steal"] = sampler.steal
        return result

    def phase(
        self, title: str, worker: Worker, traffic: Traffic, others: dict[str, int], rate: float = 0.0
    ) -> dict[str, Any]:
        """Warm-up, then the measured run; prints one line and notes what makes the figures suspect."""
        if self.warmup > 0:
            self.drive(worker, traffic, others, self.warmup, rate)
        result = self.drive(worker, traffic, others, self.duration, rate)
        print(f"  {title:<38} {_line(result)}", flush=True)
        self._check(title, result)
        return result

    def _check(self, title: str, result: dict[str, Any]) -> None:
        warn = self.warnings.append
        if result.get("errors"):
            warn(f"{title}: {result['errors']} errors (non-3xx, timeouts or socket errors)")
        if result.get("generator_cpu", 0) >= SATURATED and "target_rps" not in result:
            warn(f"{title}: the generator used {result['generator_cpu']:.0%} of its core: it may be the limit")
        core = min(self.server_cpus)
        server = result["cpu"].get("server")
        cores, steal = result["cores"], result["steal"]
        if server is not None and len(cores) > core and cores[core] - server > NOISE:
            warn(f"{title}: {cores[core] - server:.0%} of the server core went to other processes")
        if len(steal) > core and steal[core] > NOISE:
            warn(f"{title}: the hypervisor stole {steal[core]:.0%} of the server core")
        if "target_rps" in result:
            achieved, target = result["achieved_rps"], result["target_rps"]
            if achieved < 0.97 * target:
                warn(f"{title}: {achieved:,.0f} of {target:,.0f} req/s answered within the run")
            if result.get("unanswered"):
                warn(f"{title}: {result['unanswered']} requests unanswered at the end")


def _line(r: dict[str, Any]) -> str:
    cpu = r["cpu"]
    server = f"{cpu['server']:.0%}" if "server" in cpu else "n/a"
    conns = f", {r['peak_connections']} conns" if "target_rps" in r else ""
    return (
        f"{r['rps']:>8,.0f} req/s  p50 {r['p50_ms']:7.2f} ms  p99 {r['p99_ms']:7.2f} ms  "
        f"(cpu: server {server}, generator {r.get('generator_cpu', 0):.0%}{conns})"
    )
