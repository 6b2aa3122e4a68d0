"""Whole-system capacity on this machine: the highest steady rate ingest keeps up with at p99 <= 20 ms; then a soak.

    python -m loadtests.capacity [--step-s 60] [--rates 150,200,...] [--soak-min 30] [--out DIR]
    python -m loadtests.bench capacity [the same options]

It starts `clickmint up` (embedded Valkey and PostgreSQL, migrations, tracker workers, billing ingest,
portal) on a data dir and free ports of its own, with CLICKMINT_TRUST_FORWARDED=true so each locust
visitor is a new one, seeds a programme (`loadtests.seed`) and drives the locustfile's mix: TrackerUser
(70% views, 25% clicks, 4% signups, 1% purchases, ~10% bots) paced at --user-throughput tasks/s each
(Poisson arrivals on each user's own schedule), so the offered rate is users x throughput whatever the
answers take, plus --portal-users PortalUsers. Locust runs as a library in --generators child
processes (`--drive`; gevent stays out of this one) that share the rate and are steered phase by phase
over pipes; their response-time histograms are merged here.

Search: one step per rate, lowest first: a warm-up (--warmup-s), then --step-s seconds measured. A step
passes when no request failed, p99 <= --p99-ms, the achieved tracker rate is >= 95% of the target, and
ingest keeps up: at the end of the step its oldest unacknowledged or undelivered stream entry is at most
--lag-s seconds old (XINFO GROUPS / XPENDING / XRANGE on every cm:events:{N} shard). It stops at the first
failing step, then tries --refine midpoints. Soak: a fresh system at half the capacity for --soak-min
minutes, sampling every --interval-s the RSS (and PSS) of every process of the tree, CPU, failures,
p99 of the interval and ingest lag; at the end, once ingest has drained, events in PostgreSQL are
compared with the tracker requests answered.

Writes steps.csv, soak.csv and summary.json to --out, prints a table; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GROUP = "billing"
MARK = "@@ "  # prefix of the driver's protocol lines on its stdout
RATE_SHORTFALL = 0.95  # a step whose tracker rate is below this share of the target was not offered in full
INCIDENT = re.compile(r"exited with status|Traceback|\bERROR\b|CRITICAL")
WARNING = re.compile(r"\bWARNING\b")
REPLAYED = re.compile(r"replayed (\d+) spooled events")
SYSTEM_ROLES = ("up", "tracker", "tracker_workers", "ingest", "portal", "valkey", "postgres")


# --- the system under test ------------------------------------------------------------------------


class System:
    """`clickmint up` as a child, on a temporary data dir and free ports; stopped and removed on exit."""

    def __init__(self, workers: int | None, extra_env: dict[str, str]) -> None:
        self.workers = workers
        self.extra_env = extra_env
        self.output: deque[str] = deque(maxlen=400)
        self.counts = {"incidents": 0, "warnings": 0, "events_replayed": 0}
        self.lines: dict[str, list[str]] = {"incidents": [], "warnings": []}
        self.info: dict[str, Any] = {}

    def __enter__(self) -> System:
        from clickmint.embedded import child_preexec, pick_port

        self.base = Path(tempfile.mkdtemp(prefix="clickmint-capacity-"))
        os.chmod(self.base, 0o755)  # PostgreSQL runs unprivileged when we are root: it must reach its data
        self.data_dir = self.base / "data"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKMINT_", "LOCUST_"))}
        env.update(
            CLICKMINT_DATA_DIR=str(self.data_dir),
            CLICKMINT_TRACKER_PORT=str(pick_port(0)),
            CLICKMINT_PORTAL_PORT=str(pick_port(0)),
            CLICKMINT_BILLING_METRICS_PORT=str(pick_port(0)),
            CLICKMINT_METRICS_PORT=str(pick_port(0)),
            CLICKMINT_TRUST_FORWARDED="true",  # each locust visitor comes through X-Forwarded-For
            **self.extra_env,
        )
        if self.workers:
            env["CLICKMINT_TRACKER_WORKERS"] = str(self.workers)
        self.env = env
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "clickmint", "up"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            preexec_fn=child_preexec(signal.SIGTERM),
        )
        try:
            banner = self._banner()
        except BaseException:
            self._stop()
            raise
        self.info = {
            "tracker": _found(r"tracker\s+(http://\S+)", banner),
            "portal": _found(r"portal\s+(http://\S+)", banner),
            "shards": int(_found(r"ingest\s+(\d+) stream shard", banner)),
            "workers": int(_found(r"\((\d+) worker", banner)),
            "ready_s": round(time.monotonic() - started, 1),
        }
        run = json.loads((self.data_dir / "run.json").read_text())
        self.redis_url, self.database_url = str(run["redis_url"]), str(run["database_url"])
        threading.Thread(target=self._drain_output, name="up-output", daemon=True).start()
        return self

    def _banner(self) -> str:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.output.append(line.rstrip())
            if line.startswith("Seed a demo"):
                banner = "\n".join(self.output)
                if "Clickmint is up" not in banner:
                    raise RuntimeError("clickmint up started slowly:\n" + banner)
                return banner
        raise RuntimeError("clickmint up did not come up:\n" + "\n".join(self.output))

    def _drain_output(self) -> None:
        """Reads what the parts print after the banner: incidents and warnings kept (20 each) and counted."""
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.rstrip()
            self.output.append(line)
            replayed = REPLAYED.search(line)
            if replayed:
                self.counts["events_replayed"] += int(replayed.group(1))
            for kind, pattern in (("incidents", INCIDENT), ("warnings", WARNING)):
                if pattern.search(line):
                    self.counts[kind] += 1
                    if len(self.lines[kind]) < 20:
                        self.lines[kind].append(line)
                    break

    def incidents(self) -> list[str]:
        """A part crashed or logged an error (the first 20 such lines)."""
        return list(self.lines["incidents"])

    def warnings(self) -> list[str]:
        """Warnings, e.g. a batch spooled because Redis was slower than the tracker's budget (the first 20)."""
        return list(self.lines["warnings"])

    def spool_bytes(self) -> int:
        """Bytes waiting in the tracker's spool (events written there when Redis was slow or down)."""
        spool = self.data_dir / "spool"
        return sum(f.stat().st_size for f in spool.glob("*") if f.is_file()) if spool.is_dir() else 0

    def _stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)

    def __exit__(self, *exc: object) -> None:
        self._stop()


def _found(pattern: str, text: str) -> str:
    match = re.search(pattern, text)
    if match is None:
        raise RuntimeError(f"no {pattern!r} in the banner of clickmint up:\n{text}")
    return match.group(1)


def seed_programme(system: System, partners: int) -> Path:
    """A merchant, a CPS and a CPA offer and `partners` partners' links (loadtests.seed), as a seed file."""
    from loadtests.seed import seed

    seeded = asyncio.run(seed(system.database_url, partners))
    path = system.base / "seed.json"
    path.write_text(json.dumps(seeded))
    return path


# --- what the system does: ingest lag, CPU and memory per part --------------------------------------


class Probe:
    """Ingest lag from the streams, and CPU and memory of each part of the process tree."""

    def __init__(self, system: System, driver_pids: list[int] | None = None) -> None:
        import psutil
        import redis

        self.redis = redis.Redis.from_url(system.redis_url, decode_responses=True)
        self.keys = [f"cm:events:{{{shard}}}" for shard in range(system.info["shards"])]
        self.system = system
        self.up_pid = system.proc.pid
        self.driver_pids = driver_pids or []
        self._procs: dict[int, Any] = {}
        self._psutil = psutil

    def close(self) -> None:
        self.redis.close()

    def backlog(self) -> dict[str, float]:
        """Entries not yet acknowledged by ingest (lag + pending), the age of the oldest, stream lengths."""
        entries, oldest_ms, length, dead = 0, None, 0, 0
        for key in self.keys:
            length += int(self.redis.xlen(key))
            dead += int(self.redis.xlen(key.replace(":events:", ":dead:")))
            groups = self.redis.xinfo_groups(key) if self.redis.exists(key) else []
            group = next((g for g in groups if g["name"] == GROUP), None)
            if group is None:
                first = self.redis.xrange(key, count=1)
                entries += int(self.redis.xlen(key))
                oldest = [first[0][0]] if first else []
            else:
                lag = group.get("lag")
                entries += int(group.get("pending") or 0) + int(lag if lag is not None else 0)
                oldest = []
                if int(group.get("pending") or 0):
                    oldest.append(self.redis.xpending(key, GROUP)["min"])  # None: acknowledged meanwhile
                undelivered = self.redis.xrange(key, min="(" + group["last-delivered-id"], count=1)
                if undelivered:
                    oldest.append(undelivered[0][0])
            for entry_id in filter(None, oldest):
                ms = int(entry_id.split("-")[0])
                oldest_ms = ms if oldest_ms is None else min(oldest_ms, ms)
        lag_s = 0.0 if oldest_ms is None else max(0.0, time.time() - oldest_ms / 1000)
        spool = self.system.spool_bytes()
        return {"entries": entries, "lag_s": round(lag_s, 3), "stream_len": length, "dead": dead, "spool_bytes": spool}

    def valkey_used_mb(self) -> float:
        return round(int(self.redis.info("memory")["used_memory"]) / 2**20, 1)

    def roles(self) -> dict[int, str]:
        """pid -> part, for `clickmint up`, everything under it, and the load generator."""
        psutil = self._psutil
        found = {self.up_pid: "up"}
        try:
            children = psutil.Process(self.up_pid).children()
        except psutil.NoSuchProcess:
            children = []
        for child in children:
            try:
                role = _role(child.name(), " ".join(child.cmdline()))
                found[child.pid] = role
                for grandchild in child.children(recursive=True):
                    spawned = "spawn_main" in " ".join(grandchild.cmdline())
                    found[grandchild.pid] = "tracker_workers" if role == "tracker" and spawned else role
            except psutil.NoSuchProcess:
                continue
        for pid in self.driver_pids:
            found[pid] = "locust"
        return found

    def _proc(self, pid: int) -> Any:
        if pid not in self._procs:
            self._procs[pid] = self._psutil.Process(pid)
        return self._procs[pid]

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds used so far by each process ("part/pid") and by the whole machine ("machine", all cores)."""
        used: dict[str, float] = {}
        for pid, role in self.roles().items():
            try:
                times = self._proc(pid).cpu_times()
            except self._psutil.NoSuchProcess:
                continue
            used[f"{role}/{pid}"] = times.user + times.system
        machine = self._psutil.cpu_times()
        used["machine"] = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return used

    def memory_mb(self) -> dict[str, float]:
        """RSS of each part (summed over its processes) and PSS (shared pages split, so PostgreSQL adds up)."""
        out: dict[str, float] = {}
        for pid, role in self.roles().items():
            try:
                info = self._proc(pid).memory_full_info()
            except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                continue
            out[f"rss_{role}"] = out.get(f"rss_{role}", 0.0) + info.rss / 2**20
            out[f"pss_{role}"] = out.get(f"pss_{role}", 0.0) + getattr(info, "pss", info.rss) / 2**20
        out["rss_system"] = sum(out.get(f"rss_{role}", 0.0) for role in SYSTEM_ROLES)
        out["pss_system"] = sum(out.get(f"pss_{role}", 0.0) for role in SYSTEM_ROLES)
        return {key: round(value, 1) for key, value in out.items()}

    def events_in_db(self, database_url: str) -> int:
        import asyncpg

        async def count() -> int:
            conn = await asyncpg.connect(database_url)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM events"))
            finally:
                await conn.close()

        return asyncio.run(count())


def _role(name: str, cmdline: str) -> str:
    if "tracker.app:create_app" in cmdline:
        return "tracker"
    if "portal.app:create_app" in cmdline:
        return "portal"
    if "clickmint ingest" in cmdline:
        return "ingest"
    if "valkey" in name or "redis" in name:
        return "valkey"
    if "postgres" in name or "postmaster" in name:
        return "postgres"
    return "other"


def cpu_percent(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Percent of one core per part over the interval; "others" is what the machine did beyond our tree.

    A process started within the interval counts from zero; one that ended within it is left out.
    """
    used: dict[str, float] = {}
    for key, value in after.items():
        part = key.split("/")[0]
        used[part] = used.get(part, 0.0) + value - before.get(key, 0.0)
    out = {part: round(100 * value / seconds, 1) for part, value in used.items()}
    ours = sum(value for part, value in out.items() if part != "machine")
    out["others"] = round(max(0.0, out.get("machine", 0.0) - ours), 1)
    return out


class LagWatch:
    """Samples the ingest backlog every second in a thread, so a step knows its worst moment."""

    def __init__(self, probe_factory: Callable[[], Probe]) -> None:
        self._probe_factory = probe_factory
        self._samples: deque[tuple[float, dict[str, float]]] = deque(maxlen=36_000)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        probe = self._probe_factory()  # a Redis connection of its own
        try:
            while not self._stop.wait(1.0):
                try:
                    self._samples.append((time.time(), probe.backlog()))
                except Exception:  # a sample missed is not a reason to stop watching
                    continue
        finally:
            probe.close()

    def worst(self, since: float) -> dict[str, float]:
        picked = [sample for at, sample in list(self._samples) if at >= since]
        return {
            "entries": max((s["entries"] for s in picked), default=0),
            "lag_s": max((s["lag_s"] for s in picked), default=0.0),
            "spool_bytes": max((s["spool_bytes"] for s in picked), default=0),
        }

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --- the load generator: locust as a library in a child process --------------------------------------


class Driver:
    """`--generators` `--drive` children, told one phase at a time over stdin; their JSON lines are merged."""

    def __init__(self, system: System, seed_file: Path, args: argparse.Namespace) -> None:
        from clickmint.embedded import child_preexec

        plan = {
            "host": system.info["tracker"],
            "portal_host": system.info["portal"],
            "seed_file": str(seed_file),
            "bot_share": args.bot_share,
            "user_throughput": args.user_throughput,
        }
        self.throughput = args.user_throughput
        self.stderr = (system.base / "locust.log").open("w")
        self.procs: list[subprocess.Popen[str]] = []
        self.messages: queue.Queue[tuple[int, dict[str, Any] | None]] = queue.Queue()
        for number in range(args.generators):
            portal_users = args.portal_users // args.generators + (number < args.portal_users % args.generators)
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "loadtests.capacity",
                    "--drive",
                    json.dumps(plan | {"portal_users": portal_users}),
                ],
                cwd=ROOT,
                env={k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                text=True,
                preexec_fn=child_preexec(signal.SIGTERM),
            )
            self.procs.append(proc)
            threading.Thread(target=self._read, args=(number, proc), name=f"driver-{number}", daemon=True).start()

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def _read(self, number: int, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(MARK):
                self.messages.put((number, json.loads(line[len(MARK) :])))
        self.messages.put((number, None))

    def users_for(self, rate: float) -> int:
        return 0 if rate <= 0 else max(1, math.ceil(rate / self.throughput))

    def phase(
        self,
        rate: float,
        warmup_s: float,
        duration_s: float,
        interval_s: float = 0.0,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Run the tracker users at `rate` tasks/s in all; `on_event` sees the merged "measure" and "interval"."""
        share = rate / len(self.procs)
        command = {"rate": share, "users": self.users_for(share), "warmup_s": warmup_s, "duration_s": duration_s}
        command["interval_s"] = interval_s
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(command) + "\n")
            proc.stdin.flush()
        waiting: dict[tuple[str, int], list[dict[str, Any]]] = {}
        sent: dict[tuple[int, str], int] = {}
        while True:
            number, message = self.messages.get()
            if message is None:
                raise RuntimeError(f"locust driver {number} exited with {self.procs[number].wait()}; see its log")
            # The k-th message of a kind from every child makes one merged message.
            kind = message["event"]
            sent[number, kind] = sent.get((number, kind), 0) + 1
            key = (kind, sent[number, kind])
            waiting.setdefault(key, []).append(message)
            if len(waiting[key]) < len(self.procs):
                continue
            merged = _merge(waiting.pop(key))
            if kind == "phase_end":
                return merged
            if on_event is not None:
                on_event(merged)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                assert proc.stdin is not None
                try:
                    proc.stdin.write(json.dumps({"stop": True}) + "\n")
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.stderr.close()


def _merge(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One message from the same message of every generator: counts added, histograms merged."""
    merged: dict[str, Any] = dict(messages[0])
    times: dict[float, int] = {}
    for message in messages:
        for key, count in message.get("times", {}).items():
            times[float(key)] = times.get(float(key), 0) + int(count)
    for key in ("requests", "failures", "tracker_requests", "users", "answered_tracker_total"):
        if key in merged:
            merged[key] = sum(int(m[key]) for m in messages)
    for key in ("routes", "errors"):
        if key in merged:
            total: dict[str, Any] = {}
            for message in messages:
                for name, value in message[key].items():
                    if isinstance(value, dict):
                        seen = total.setdefault(name, dict.fromkeys(value, 0))
                        for field, number in value.items():
                            seen[field] = seen.get(field, 0) + number
                    else:
                        total[name] = total.get(name, 0) + value
            merged[key] = total
    merged["t"] = max(float(m["t"]) for m in messages)
    merged["seconds"] = max(float(m.get("seconds", 0.0)) for m in messages)
    merged["max_ms"] = max(float(m.get("max_ms", 0.0)) for m in messages)
    merged["locust_cpu_warning"] = any(m.get("locust_cpu_warning") for m in messages)
    seconds = max(1e-9, merged["seconds"])
    merged["rps"] = merged.get("requests", 0) / seconds
    merged["tracker_rps"] = merged.get("tracker_requests", 0) / seconds
    for name, q in (("p50_ms", 0.5), ("p90_ms", 0.9), ("p99_ms", 0.99), ("p999_ms", 0.999)):
        merged[name] = percentile(times, q)
    merged.pop("times", None)
    return merged


def percentile(times: dict[float, int], q: float) -> float:
    """The smallest response time (ms, locust's buckets) at or below which a share q of the requests fall."""
    total = sum(times.values())
    if not total:
        return 0.0
    seen = 0
    for value in sorted(times):
        seen += times[value]
        if seen >= q * total:
            return value
    return max(times)


def _drive(plan_text: str) -> int:
    """A generator child: locust's runner in this process, phases read from stdin, results as MARK lines."""
    import gevent
    from gevent.fileobject import FileObjectPosix
    from locust import events
    from locust.env import Environment

    from loadtests.locustfile import PortalUser, TrackerUser

    plan = json.loads(plan_text)
    options = argparse.Namespace(
        seed_file=plan["seed_file"],
        portal_host=plan["portal_host"],
        bot_share=plan["bot_share"],
        user_throughput=plan["user_throughput"],
    )
    classes: list[Any] = [TrackerUser]
    if plan["portal_users"]:
        PortalUser.fixed_count = plan["portal_users"]
        classes.append(PortalUser)
    env = Environment(user_classes=classes, events=events, host=plan["host"], parsed_options=options)
    runner = env.create_local_runner()
    answered = {"tracker": 0}

    @events.request.add_listener
    def _count(name: str, exception: Exception | None, **kwargs: Any) -> None:
        if exception is None and not name.startswith("portal"):
            answered["tracker"] += 1

    def emit(message: dict[str, Any]) -> None:
        sys.stdout.write(MARK + json.dumps(message) + "\n")
        sys.stdout.flush()

    def tracker_requests() -> int:
        return sum(e.num_requests for e in env.stats.entries.values() if not e.name.startswith("portal"))

    stdin = FileObjectPosix(sys.stdin.fileno(), "rb", close=False)  # cooperative: users run while we wait
    for raw in stdin:
        command = json.loads(raw)
        if command.get("stop"):
            break
        trackers = int(command["users"])
        if trackers:  # users x throughput is exactly the rate asked for
            options.user_throughput = float(command["rate"]) / trackers
        users = trackers + int(plan["portal_users"])
        runner.start(users, spawn_rate=min(100, max(1, users)))
        gevent.sleep(float(command["warmup_s"]))
        env.stats.reset_all()
        start = time.time()
        emit({"event": "measure", "t": start, "users": users})
        total = env.stats.total
        last = (0, 0, 0, dict(total.response_times), start)
        interval = float(command["interval_s"]) or float(command["duration_s"])
        end = start + float(command["duration_s"])
        while time.time() < end - 0.01:
            gevent.sleep(max(0.0, min(end, last[4] + interval) - time.time()))
            now, times, tracked = time.time(), dict(total.response_times), tracker_requests()
            if command["interval_s"]:
                delta = {k: v - last[3].get(k, 0) for k, v in times.items() if v - last[3].get(k, 0)}
                emit(
                    {
                        "event": "interval",
                        "t": now,
                        "seconds": now - last[4],
                        "requests": total.num_requests - last[0],
                        "failures": total.num_failures - last[1],
                        "tracker_requests": tracked - last[2],
                        "times": delta,
                    }
                )
            last = (total.num_requests, total.num_failures, tracked, times, now)
        emit(
            {
                "event": "phase_end",
                "t": time.time(),
                "seconds": time.time() - start,
                "requests": total.num_requests,
                "failures": total.num_failures,
                "tracker_requests": tracker_requests(),
                "max_ms": float(total.max_response_time or 0),
                "times": dict(total.response_times),
                "routes": {
                    e.name: {"requests": e.num_requests, "failures": e.num_failures} for e in env.stats.entries.values()
                },
                "errors": {f"{e.name}: {e.error}": e.occurrences for e in env.stats.errors.values()},
                "answered_tracker_total": answered["tracker"],
                "locust_cpu_warning": bool(runner.cpu_warning_emitted),
            }
        )
    runner.quit()
    return 0


# --- the search and the soak -------------------------------------------------------------------------


@contextmanager
def running(args: argparse.Namespace) -> Iterator[tuple[System, Driver, Probe, LagWatch]]:
    """A fresh system, seeded, with the load generator and the probes attached."""
    with System(args.workers, _extra_env(args)) as system:
        seed_file = seed_programme(system, args.partners)
        driver = Driver(system, seed_file, args)
        probe = Probe(system, driver.pids)
        watch = LagWatch(lambda: Probe(system))
        try:
            yield system, driver, probe, watch
        finally:
            watch.close()
            driver.close()
            probe.close()


def _extra_env(args: argparse.Namespace) -> dict[str, str]:
    return {"CLICKMINT_STREAM_RETENTION_S": str(args.stream_retention_s)} if args.stream_retention_s else {}


def step(driver: Driver, probe: Probe, watch: LagWatch, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    """One rate: warm-up, then `step_s` seconds measured; lag and CPU at its start and end."""
    marks: dict[str, Any] = {}

    def on_event(message: dict[str, Any]) -> None:
        if message["event"] == "measure":
            marks.update(t=message["t"], users=message["users"], lag=probe.backlog(), cpu=probe.cpu_seconds())
            marks["warnings"] = probe.system.counts["warnings"]

    result = driver.phase(rate, args.warmup_s, args.step_s, on_event=on_event)
    lag_end, cpu_end = probe.backlog(), probe.cpu_seconds()
    worst = watch.worst(marks["t"])
    cpu = cpu_percent(marks["cpu"], cpu_end, result["seconds"])
    row = {
        "rate": rate,
        "users": marks["users"],
        "seconds": round(result["seconds"], 1),
        "requests": result["requests"],
        "achieved_rps": round(result["rps"], 1),
        "tracker_rps": round(result["tracker_rps"], 1),
        "failures": result["failures"],
        "p50_ms": result["p50_ms"],
        "p90_ms": result["p90_ms"],
        "p99_ms": result["p99_ms"],
        "p999_ms": result["p999_ms"],
        "max_ms": round(result["max_ms"], 1),
        "lag_entries_start": marks["lag"]["entries"],
        "lag_entries_end": lag_end["entries"],
        "lag_entries_max": max(worst["entries"], lag_end["entries"]),
        "lag_s_start": marks["lag"]["lag_s"],
        "lag_s_end": lag_end["lag_s"],
        "lag_s_max": max(worst["lag_s"], lag_end["lag_s"]),
        "dead_letters": lag_end["dead"],
        "spool_bytes_max": max(worst["spool_bytes"], lag_end["spool_bytes"]),
        "up_warnings": probe.system.counts["warnings"] - marks["warnings"],  # e.g. batches spooled: Redis > 20 ms
    }
    row |= {f"cpu_{key}": value for key, value in sorted(cpu.items())}
    reasons = []
    if row["failures"]:
        reasons.append(f"{row['failures']} failures")
    if row["p99_ms"] > args.p99_ms:
        reasons.append(f"p99 {row['p99_ms']:.0f} ms")
    if row["tracker_rps"] < RATE_SHORTFALL * rate:
        reasons.append(f"offered only {row['tracker_rps']:.0f}/s")
    if row["lag_s_end"] > args.lag_s:
        reasons.append(f"ingest {row['lag_s_end']:.1f} s behind")
    row["passed"] = not reasons
    row["why"] = "; ".join(reasons) or "ok"
    row["errors"] = result["errors"]
    print(_step_line(row), flush=True)
    return row


def _step_line(row: dict[str, Any]) -> str:
    return (
        f"  {row['rate']:>6.0f}/s  got {row['tracker_rps']:>7.1f}/s"
        f"  p50 {row['p50_ms']:>4.0f}  p99 {row['p99_ms']:>5.0f} ms"
        f"  fail {row['failures']:>4}  lag {row['lag_s_start']:>5.2f}->{row['lag_s_end']:>5.2f} s"
        f" ({row['lag_entries_end']:>6} entries)  cpu tracker {row.get('cpu_tracker_workers', 0):>5.1f}%"
        f" ingest {row.get('cpu_ingest', 0):>5.1f}% pg {row.get('cpu_postgres', 0):>5.1f}%"
        f" locust {row.get('cpu_locust', 0):>5.1f}% others {row.get('cpu_others', 0):>5.1f}%  {row['why']}"
    )


def wait_drained(probe: Probe, limit_s: float, timeout_s: float = 120.0, system: System | None = None) -> float:
    """Wait until ingest is at most `limit_s` behind (and, given the system, its spool empty); returns the lag."""
    deadline = time.monotonic() + timeout_s
    while True:
        lag = probe.backlog()["lag_s"]
        spooled = system.spool_bytes() if system is not None else 0
        if (lag <= limit_s and not spooled) or time.monotonic() > deadline:
            return lag
        time.sleep(1.0)


def search(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Steps up the rates until one fails, then refines between the last pass and the first failure."""
    steps: list[dict[str, Any]] = []
    with running(args) as (system, driver, probe, watch):
        print(f"system up in {system.info['ready_s']} s: {system.info}", flush=True)
        for rate in args.rates:
            steps.append(step(driver, probe, watch, rate, args))
            if not steps[-1]["passed"]:
                break
        passed = [s["rate"] for s in steps if s["passed"]]
        failed = [s["rate"] for s in steps if not s["passed"]]
        low, high = (max(passed) if passed else 0.0), (min(failed) if failed else 0.0)
        for _ in range(args.refine if passed and failed else 0):
            middle = float(round((low + high) / 2 / 10) * 10)
            if middle <= low or middle >= high:
                break
            driver.phase(max(1.0, low / 2), 0, 1)  # back off, then let ingest catch up
            wait_drained(probe, 0.5)
            steps.append(step(driver, probe, watch, middle, args))
            low, high = (middle, high) if steps[-1]["passed"] else (low, middle)
        context = {
            "system": system.info,
            "incidents": system.incidents(),
            "warnings": system.warnings(),
            "counts": dict(system.counts),
            "cpu_count": os.cpu_count(),
        }
    return steps, context


def soak(args: argparse.Namespace, rate: float, out: Path) -> dict[str, Any]:
    """`rate` for soak_min minutes on a fresh system, a row every interval_s; then drained and counted."""
    rows: list[dict[str, Any]] = []
    with running(args) as (system, driver, probe, watch):
        print(f"soak at {rate:.0f}/s for {args.soak_min} min; system up in {system.info['ready_s']} s", flush=True)
        state: dict[str, Any] = {}

        def on_event(message: dict[str, Any]) -> None:
            now = message["t"]
            cpu = probe.cpu_seconds()
            if message["event"] == "measure":
                state.update(t0=now, last=now, cpu=cpu)
                rows.append({"t_s": 0.0, **probe.memory_mb(), **_lag_row(probe)})
                return
            row = {
                "t_s": round(now - state["t0"], 1),
                "requests": message["requests"],
                "rps": round(message["rps"], 1),
                "failures": message["failures"],
                "p50_ms": message["p50_ms"],
                "p99_ms": message["p99_ms"],
                **_lag_row(probe),
                "lag_s_max": watch.worst(state["last"])["lag_s"],
                **probe.memory_mb(),
                "up_warnings": system.counts["warnings"],
                "up_incidents": system.counts["incidents"],
            }
            row |= {f"cpu_{k}": v for k, v in cpu_percent(state["cpu"], cpu, now - state["last"]).items()}
            state.update(last=now, cpu=cpu)
            rows.append(row)
            print(
                f"  {row['t_s']:>7.0f} s  {row['rps']:>6.1f}/s  p99 {row['p99_ms']:>4.0f} ms  fail {row['failures']}"
                f"  lag {row['lag_s']:.2f} s  rss {row['rss_system']:.0f} MB (pss {row['pss_system']:.0f})"
                f"  valkey used {row['valkey_used_mb']:.0f} MB",
                flush=True,
            )

        result = driver.phase(rate, args.warmup_s, args.soak_min * 60, args.interval_s, on_event)
        driver.phase(0, 0, 0.5)  # tracker users stopped: what is left is ingest catching up
        spooled_at_end = system.spool_bytes()
        drained_lag = wait_drained(probe, 0.0, timeout_s=300, system=system)
        time.sleep(2.0)  # a batch the tracker wrote while we looked, then ingest's last commit
        drained_lag = wait_drained(probe, 0.0, timeout_s=60, system=system)
        answered = driver.phase(0, 0, 0.1)["answered_tracker_total"]
        events = probe.events_in_db(system.database_url)
        incidents, warnings, counts = system.incidents(), system.warnings(), dict(system.counts)
    _write_csv(out / "soak.csv", rows)
    return {
        "rows": rows,
        "result": result,
        "answered": answered,
        "events": events,
        "drained_lag_s": drained_lag,
        "spool_bytes_at_end": spooled_at_end,
        "incidents": incidents,
        "counts": counts,
        "warnings": warnings,
    }


def _lag_row(probe: Probe) -> dict[str, Any]:
    lag = probe.backlog()
    return {
        "lag_entries": lag["entries"],
        "lag_s": lag["lag_s"],
        "stream_len": lag["stream_len"],
        "dead_letters": lag["dead"],
        "spool_bytes": lag["spool_bytes"],
        "valkey_used_mb": probe.valkey_used_mb(),
    }


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [key for key, value in row.items() if key not in columns and not isinstance(value, dict)]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# --- the command -------------------------------------------------------------------------------------


def _rates(text: str) -> list[float]:
    rates = sorted({float(part) for part in text.split(",") if part.strip()})
    if not rates or rates[0] <= 0:
        raise argparse.ArgumentTypeError("rates are positive numbers, comma-separated")
    return rates


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.capacity", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rates",
        type=_rates,
        default=_rates("150,200,250,300,350,400,500,600"),
        help="target tracker rates (req/s) of the steps, comma-separated",
    )
    parser.add_argument("--step-s", type=float, default=60.0, help="seconds measured per step")
    parser.add_argument("--warmup-s", type=float, default=10.0, help="seconds at the new rate before measuring")
    parser.add_argument(
        "--refine", type=int, default=1, help="midpoints tried between the last pass and the first fail"
    )
    parser.add_argument("--soak-min", type=float, default=30.0, help="soak minutes at half the capacity (0: none)")
    parser.add_argument("--soak-rps", type=float, default=0.0, help="soak at this rate instead of half the capacity")
    parser.add_argument("--interval-s", type=float, default=30.0, help="seconds between soak samples")
    parser.add_argument("--out", type=Path, default=Path("out/capacity"), help="directory for the CSV and JSON")
    parser.add_argument("--p99-ms", type=float, default=20.0, help="a step passes with p99 at most this")
    parser.add_argument("--lag-s", type=float, default=2.0, help="... and ingest at most this far behind at its end")
    parser.add_argument("--user-throughput", type=float, default=10.0, help="tasks/s of each locust tracker user")
    parser.add_argument("--portal-users", type=int, default=2, help="locust PortalUsers beside the tracker users")
    parser.add_argument(
        "--generators", type=int, default=2, help="locust processes sharing the rate (default: 2, one per core)"
    )
    parser.add_argument("--bot-share", type=float, default=0.10, help="share of tracker users with a bot user agent")
    parser.add_argument("--partners", type=int, default=10, help="seeded partners, each with a link per offer")
    parser.add_argument("--workers", type=int, default=0, help="tracker workers (0: clickmint up's default)")
    parser.add_argument(
        "--stream-retention-s",
        type=int,
        default=0,
        help="CLICKMINT_STREAM_RETENTION_S for the run (0: clickmint's default)",
    )
    parser.add_argument("--drive", help=argparse.SUPPRESS)  # internal: the locust child
    return parser


def run(argv: list[str] | None = None) -> int:
    """The search, then the soak; prints a table and ends with one JSON line."""
    args = _parser().parse_args(argv)
    if args.drive:
        return _drive(args.drive)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.time()
    print(
        f"capacity search: rates {', '.join(f'{r:.0f}' for r in args.rates)} req/s, {args.step_s:.0f} s each "
        f"(+{args.warmup_s:.0f} s warm-up); pass = 0 failures, p99 <= {args.p99_ms:.0f} ms, ingest <= "
        f"{args.lag_s:.0f} s behind at the end",
        flush=True,
    )
    steps, context = search(args)
    _write_csv(args.out / "steps.csv", steps)
    passed = [s for s in steps if s["passed"]]
    best = max(passed, key=lambda s: s["rate"]) if passed else None
    capacity = best["rate"] if best else 0.0
    summary: dict[str, Any] = {
        "capacity_rps": capacity,
        "p99_ms_at_capacity": best["p99_ms"] if best else None,
        "achieved_rps_at_capacity": best["tracker_rps"] if best else None,
        "locust_cpu_pct_at_capacity": best.get("cpu_locust") if best else None,
    }
    soaked: dict[str, Any] | None = None
    soak_rps = args.soak_rps or round(capacity / 2 if capacity else args.rates[0] / 2)
    if args.soak_min > 0:
        soaked = soak(args, soak_rps, args.out)
    summary |= _soak_summary(soaked, soak_rps, args)
    details = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "drive"},
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(began)),
        "minutes": round((time.time() - began) / 60, 1),
        "search": context,
        "steps": steps,
        "soak": {k: v for k, v in (soaked or {}).items() if k != "rows"},
        "summary": summary,
    }
    (args.out / "summary.json").write_text(json.dumps(details, indent=2, default=str) + "\n")
    _print_table(steps, soaked, summary)
    print(json.dumps(summary))
    return 0


def _soak_summary(soaked: dict[str, Any] | None, rate: float, args: argparse.Namespace) -> dict[str, Any]:
    if soaked is None:
        return {
            "soak_rps": 0,
            "soak_minutes": 0,
            "rss_start_mb": None,
            "rss_end_mb": None,
            "errors": 0,
            "max_lag": None,
        }
    rows, result = soaked["rows"], soaked["result"]
    first, last = rows[0], rows[-1]
    return {
        "soak_rps": rate,
        "soak_minutes": round(result["seconds"] / 60, 1),
        "soak_achieved_rps": round(result["tracker_rps"], 1),
        "soak_p99_ms": result["p99_ms"],
        "soak_p99_ms_worst_interval": max((r.get("p99_ms", 0.0) for r in rows[1:]), default=0.0),
        "rss_start_mb": first["rss_system"],
        "rss_end_mb": last["rss_system"],
        "pss_start_mb": first["pss_system"],
        "pss_end_mb": last["pss_system"],
        "errors": result["failures"] + last["dead_letters"] + soaked["counts"]["incidents"],
        "max_lag": max(max(r["lag_entries"] for r in rows), 0),
        "max_lag_s": max(max(r.get("lag_s_max", r["lag_s"]) for r in rows), 0.0),
        "events_in_db": soaked["events"],
        "tracker_requests_answered": soaked["answered"],
        "warnings": soaked["counts"]["warnings"],
        "events_spooled_and_replayed": soaked["counts"]["events_replayed"],
    }


def _print_table(steps: list[dict[str, Any]], soaked: dict[str, Any] | None, summary: dict[str, Any]) -> None:
    print("\nsteps (target req/s, achieved, latency ms, failures, ingest lag s start->end, CPU % of one core):")
    for row in steps:
        print(_step_line(row))
    print(f"capacity: {summary['capacity_rps']:.0f} req/s (p99 {summary['p99_ms_at_capacity']} ms)")
    if soaked is None:
        return
    rows = soaked["rows"]
    print(
        f"\nsoak at {summary['soak_rps']:.0f} req/s for {summary['soak_minutes']} min, per part RSS MB first -> last:"
    )
    for role in (*SYSTEM_ROLES, "locust"):
        key = f"rss_{role}"
        if key in rows[0]:
            print(f"  {role:<16} {rows[0][key]:>8.1f} -> {rows[-1].get(key, 0.0):>8.1f}")
    print(f"  {'system (rss)':<16} {summary['rss_start_mb']:>8.1f} -> {summary['rss_end_mb']:>8.1f}")
    print(f"  {'system (pss)':<16} {summary['pss_start_mb']:>8.1f} -> {summary['pss_end_mb']:>8.1f}")
    print(
        f"  errors {summary['errors']}, p99 {summary['soak_p99_ms']} ms (worst interval "
        f"{summary['soak_p99_ms_worst_interval']} ms), max lag {summary['max_lag']} entries / "
        f"{summary['max_lag_s']} s, events in PostgreSQL {summary['events_in_db']} for "
        f"{summary['tracker_requests_answered']} tracker requests answered"
    )
    for line in soaked["incidents"] + soaked["warnings"]:
        print(f"  clickmint up said: {line}")


def main() -> int:
    return run()


if __name__ == "__main__":
    sys.exit(main())
