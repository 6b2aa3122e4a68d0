"""`python -m loadtests.bench tracker`: the click redirect against a bare ASGI 302, same port, same load.

The click has everything on (--plain: no caps, no GeoIP database, as measured before 2026-11-26).
One after the other on one port: (1) loadtests.baseline:app, (2) loadtests.floor:app (the bare 302 that
first appends one event to a stream by group commit: the least any tracker that records before it answers
costs on the day's machine), (3) tracker.app:create_app, each ONE uvicorn worker pinned to the first core;
Redis/Valkey, PostgreSQL, the load generator and this process on the second. Each gets a warm-up,
then a closed-loop run at --connections (wrk when installed, else the Python generator) for req/s,
p50 and p99. The tracker then gets an open-loop
run at --fraction (80%) of the rate it just reached, from the Python generator (wrk cannot pace),
whose latencies count from each request's due time, and its RSS is sampled under load; then the bare
app again, paced at that same rate: the open-loop figures' own baseline. The bare app is also paced at
--fraction of its own maximum, to show whether the open-loop target is within reach of uvicorn alone.
Where the open loop's p99 comes from is printed beside it: the worker's own histograms over the paced phase
(a click's time inside the app, its Redis batch included, and how late the event loop ran a timer, as p99
bucket bounds) and, with the embedded Valkey, Valkey's latency monitor over the same phase (its events over
5 ms: a fork for an AOF rewrite, key expiry, a slow command) with the keys that expired.
--rounds N repeats baseline+tracker N times and reports medians (for noisy machines).
The smart-link phase: right after the tracker's closed-loop run, the same worker serves a smart link of the same
offer with five rules (the click matches only the fifth, a weighted A/B choice), then the plain link again; the
smart link's req/s and server CPU per click are set against the mean of the two plain runs around it (target:
at most 5 % more CPU a click, SMART_TARGET).
The last line printed is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

from clickmint.embedded import pick_port
from kernel.errors import ClickmintError
from loadtests import floor
from loadtests.runner import Runner
from loadtests.servers import Servers, delete_keys, seed_link, stream_lengths, unseed_link
from loadtests.traffic import BROWSER_UA, Traffic
from loadtests.workers import Worker

TARGET_RATIO = 0.6
TARGET_P99_MS_AT_FRACTION = 10.0
KEY_PREFIX = "bench"
FLOOR_PREFIX = floor.key_prefix(KEY_PREFIX)
EVERYTHING = (
    "everything on: bot and burst checks, unique-click SET NX, click caps (offer and partner, daily and "
    "lifetime) by lease from Redis, GeoIP country, signed click id, cookie, macros"
)
PLAIN = "plain: no caps on the offer, no GeoIP database (--plain)"
SMART_TARGET = 1.05  # a smart-link click with five rules costs at most 5 % more server CPU than a plain one
_SHOP = "https://shop.example.com/"
# Five rules; the bench's visitors (desktop Chrome, Accept-Language en-US, 10.x addresses) match only the fifth,
# so every click evaluates all five: country, device and OS, language, and a weighted choice between two URLs.
SMART_RULES = {
    "rules": [
        {"name": "r1", "country": ["ZZ"], "variants": [{"name": "r1", "url": _SHOP + "r1?cid={click_id}"}]},
        {"name": "r2", "device": ["tablet"], "os": ["ios"], "variants": [{"name": "r2", "url": _SHOP + "r2"}]},
        {"name": "r3", "language": ["xx"], "variants": [{"name": "r3", "url": _SHOP + "r3?cid={click_id}"}]},
        {"name": "r4", "language": ["en"], "os": ["android"], "variants": [{"name": "r4", "url": _SHOP + "r4"}]},
        {
            "name": "r5",
            "device": ["desktop"],
            "language": ["en", "de"],
            "variants": [
                {"name": "A", "url": _SHOP + "landing?cid={click_id}&v=a", "weight": 50},
                {"name": "B", "url": _SHOP + "landing?cid={click_id}&v=b", "weight": 50},
            ],
        },
    ],
    "fallback": {"name": "home", "url": _SHOP + "landing?cid={click_id}"},
}
COUNTERS = ("events_redis_total", "events_spooled_total", "batches_total", "bot_events_total")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench tracker", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase (default 10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up before each phase (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections, closed loop (64)")
    parser.add_argument("--fraction", type=float, default=0.8, help="paced run at this share of the max rate (0.8)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat baseline+tracker, report medians (1)")
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="no caps on the offer and no GeoIP database (as measured before 2026-11-26)",
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="then py-spy record the tracker at max rate (.svg/.json/.txt)"
    )
    return parser


def run(argv: list[str]) -> int:
    """The benchmark's entry point for loadtests.bench; 1 when a server or the tracker would not run."""
    args = _parser().parse_args(argv)
    runner = Runner(args.generator, args.connections, args.duration, args.warmup)
    os.sched_setaffinity(0, runner.side_cpus)  # us, and the embedded servers we start, off the server core
    try:
        rounds, counters = _measure(args, runner)
    except (RuntimeError, ClickmintError, OSError) as exc:
        print(f"tracker benchmark failed: {exc}", file=sys.stderr, flush=True)
        return 1
    _report(args, runner, rounds, counters)
    return 0


def _measure(args: argparse.Namespace, runner: Runner) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Start the servers, run the rounds, clean up; returns each round's runs and the tracker's counters."""
    servers = Servers.open()
    seeded = None
    try:
        seeded = asyncio.run(seed_link(servers.database_url))
        smart_code = asyncio.run(_seed_smart(servers.database_url, seeded.offer_id, seeded.partner_id))
        port = pick_port(0)
        env = _tracker_env(servers, port)
        env.pop("CLICKMINT_GEOIP_DB", None)
        if not args.plain:  # everything on: the offer's click caps are checked and counted, the country looked up
            asyncio.run(_set_caps(servers.database_url, seeded.offer_id))
            env["CLICKMINT_GEOIP_DB"] = _country_db(servers.base / "country.mmdb")
        shards = int(env.get("CLICKMINT_SHARDS", "4"))
        path = f"/c/{seeded.code}?sub1=x"
        traffic = Traffic("127.0.0.1", port, path)
        smart_traffic = Traffic("127.0.0.1", port, f"/c/{smart_code}?sub1=x")
        others = {"valkey": servers.valkey.proc.pid} if servers.valkey and servers.valkey.proc else {}
        if not others:
            runner.warnings.append("Redis from CLICKMINT_REDIS_URL: not pinned, its CPU not measured")
        print(
            f"tracker benchmark: one uvicorn worker on cpu {min(runner.server_cpus)}; redis, postgres and the "
            f"load generator on cpu {min(runner.side_cpus)}\n"
            f"  redis: {servers.redis_where}; postgres: {servers.postgres_where}\n"
            f"  click: {PLAIN if args.plain else EVERYTHING}\n"
            f"  load: GET {path} (Chrome UA, one X-Forwarded-For per request), {args.connections} keep-alive "
            f"connections, {runner.generator}; {args.warmup:g} s warm-up + {args.duration:g} s per phase\n",
            flush=True,
        )
        counters = dict.fromkeys(COUNTERS, 0)
        before = stream_lengths(servers.redis_url, KEY_PREFIX, shards)
        floor_before = stream_lengths(servers.redis_url, FLOOR_PREFIX, shards)
        rounds: list[dict[str, Any]] = []
        for n in range(args.rounds):
            if args.rounds > 1:
                print(f"  round {n + 1}/{args.rounds}", flush=True)
            with Worker("loadtests.baseline:app", port, env, runner.server_cpus, servers.base / "base.log", False) as w:
                w.wait_ready(path, expect=302)
                base = runner.phase("baseline (bare ASGI 302)", w, traffic, others)
                # Is the open-loop target within reach of the bare app itself, at the same share of its own max?
                own = base["rps"] * args.fraction
                base_own = runner.phase(f"baseline at {args.fraction:.0%}: {own:,.0f}/s open", w, traffic, others, own)
            # The floor: the bare 302 that first appends one event by group commit, what any durable tracker pays.
            with Worker("loadtests.floor:app", port, env, runner.server_cpus, servers.base / "floor.log", False) as w:
                w.wait_ready(path, expect=302)
                at_floor = runner.phase("floor (bare 302 + group-commit XADD)", w, traffic, others)
            with Worker(
                "tracker.app:create_app", port, env, runner.server_cpus, servers.base / "tracker.log", True
            ) as w:
                w.wait_ready("/readyz")
                _check_redirect(w, path)
                best = runner.phase("tracker (/c/<code>), closed loop", w, traffic, others)
                _check_smart(w, smart_traffic.path)
                smart = runner.phase("smart link, 5 rules, closed loop", w, smart_traffic, others)
                plain_again = runner.phase("tracker (/c/<code>) again", w, traffic, others)
                rate = best["rps"] * args.fraction
                title = f"tracker at {args.fraction:.0%}: {rate:,.0f}/s open loop"
                inside = _histograms(w)  # resets the loop's worst-lag gauge: the phase's own worst is read after
                watch = _ValkeyWatch(servers.redis_url) if servers.valkey else None
                paced = runner.phase(title, w, traffic, others, rate)
                paced.update(_inside(inside, _histograms(w)))
                if watch is not None:
                    paced.update(watch.read())
                for name, value in _metrics(w).items():
                    if name in counters:
                        counters[name] += int(value)
                rounds.append(
                    {
                        "base": base,
                        "base_own": base_own,
                        "floor": at_floor,
                        "best": best,
                        "paced": paced,
                        "rate": rate,
                        "smart": smart,
                        "plain_again": plain_again,
                    }
                )
                if args.profile and n == args.rounds - 1:
                    counters["stream_added"] = stream_lengths(servers.redis_url, KEY_PREFIX, shards) - before
                    _profile(runner, w, traffic, others, args.profile)
            # The open-loop target's own baseline: the bare app at the very rate the tracker was paced at.
            with Worker("loadtests.baseline:app", port, env, runner.server_cpus, servers.base / "base.log", False) as w:
                w.wait_ready(path, expect=302)
                title = f"baseline at the same {rate:,.0f}/s"
                rounds[-1]["base_paced"] = runner.phase(title, w, traffic, others, rate)
        counters["floor_stream_added"] = stream_lengths(servers.redis_url, FLOOR_PREFIX, shards) - floor_before
        if "stream_added" not in counters:
            counters["stream_added"] = stream_lengths(servers.redis_url, KEY_PREFIX, shards) - before
        if not args.plain:
            runner.warnings += _check_everything_on(servers.redis_url, seeded.offer_id, shards)
    finally:
        if servers.valkey is None:
            delete_keys(servers.redis_url, KEY_PREFIX)
        if servers.postgres is None and seeded is not None:
            asyncio.run(_unseed_smart(servers.database_url, seeded.offer_id))
            asyncio.run(unseed_link(servers.database_url, seeded))
        servers.close()
    return rounds, counters


# Limits no bench reaches: every click takes a unit of its caps (offer-wide and per partner, daily and
# lifetime) from the worker's lease on them (blocks taken from Redis by the LEASE script, used units
# reported with each batch) before its event is appended, as it does on a capped offer in production.
BENCH_CAPS = {
    "clicks": {"daily": 10**12, "lifetime": 10**15},
    "per_partner": {"clicks": {"daily": 10**12, "lifetime": 10**15}},
}


async def _set_caps(dsn: str, offer_id: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE offers SET caps = $1 WHERE id = $2", json.dumps(BENCH_CAPS), offer_id)
    finally:
        await conn.close()


def _country_db(path: Path) -> str:
    """A MaxMind-format country database covering the generator's visitors (10.0.0.0/8, one country per /16)."""
    try:
        from mmdb_writer import MMDBWriter  # the test extra's writer, as the tests use it
        from netaddr import IPSet
    except ImportError as exc:
        raise RuntimeError(f"{exc}: install the test extra (pip install -e '.[test]') or run with --plain") from None

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    countries = ("US", "DE", "FR", "GB", "JP", "BR", "IN", "ES", "IT", "NL", "CA", "AU", "SE", "PL", "MX", "KR")
    for n in range(256):
        writer.insert_network(IPSet([f"10.{n}.0.0/16"]), {"country": {"iso_code": countries[n % len(countries)]}})
    writer.to_db_file(str(path))
    return str(path)


def _check_redirect(worker: Worker, path: str) -> None:
    """One click by hand before the load: the offer's 302 with a click id, else there is nothing to measure."""
    status, headers, _ = worker.get(path, {"User-Agent": BROWSER_UA, "X-Forwarded-For": "192.0.2.1"})
    location = headers.get("location", "")
    if status != 302 or not location.startswith("https://shop.example.com/landing?cid=") or "set-cookie" not in headers:
        raise RuntimeError(f"the tracker answered {status} {location!r}, not the offer's 302 with a cookie")


async def _seed_smart(dsn: str, offer_id: int, partner_id: int) -> str:
    """A smart link of the seeded partner on the seeded offer, with SMART_RULES; returns its code."""
    conn = await asyncpg.connect(dsn)
    try:
        code = "benchsmart" + secrets.token_urlsafe(6)
        await conn.execute(
            "INSERT INTO links (code, partner_id, offer_id, smart_rules) VALUES ($1, $2, $3, $4)",
            code,
            partner_id,
            offer_id,
            json.dumps(SMART_RULES),
        )
        return code
    finally:
        await conn.close()


async def _unseed_smart(dsn: str, offer_id: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DELETE FROM links WHERE offer_id = $1 AND smart_rules IS NOT NULL", offer_id)
    finally:
        await conn.close()


def _check_smart(worker: Worker, path: str) -> None:
    """One smart-link click by hand: the fifth rule's A or B variant, else the rules were not applied."""
    status, headers, _ = worker.get(path, {"User-Agent": BROWSER_UA, "X-Forwarded-For": "192.0.2.1",
                                           "Accept-Language": "en-US,en;q=0.9"})  # fmt: skip
    location = headers.get("location", "")
    if status != 302 or not location.startswith(_SHOP + "landing?cid=") or "&v=" not in location:
        raise RuntimeError(f"the smart link answered {status} {location!r}, not its fifth rule's variant")


def _check_everything_on(redis_url: str, offer_id: int, shards: int) -> list[str]:
    """The measured clicks really ran the caps and the country lookup: counters moved, countries were found."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        counters = [int(client.get(key) or 0) for key in client.scan_iter(match=f"{KEY_PREFIX}:cap:{{o{offer_id}}}:*")]
        latest = [client.xrevrange(f"{KEY_PREFIX}:events:{{{n}}}", count=1) for n in range(shards)]
    finally:
        client.close()
    countries = {json.loads(entry[0][1][b"d"]).get("country") for entry in latest if entry}
    problems = []
    if len(counters) < 4 or min(counters) <= 0:  # 6 keys when the run crossed midnight UTC (2 daily per day)
        problems.append(f"the cap counters did not all move: {counters}")
    if not countries or "" in countries:
        problems.append(f"clicks were stored without a country: {countries}")
    if not problems:
        print(f"  checked: {len(counters)} cap counters moved; countries of the last clicks {sorted(countries)}")
    return problems


def _metrics(worker: Worker) -> dict[str, float]:
    """The tracker's /metrics counters, summed over labels, without the clickmint_ prefix (read on the click
    port with the bench's own metrics token: the admin address is not the worker's port)."""
    status, _, body = worker.get("/metrics", {"authorization": f"Bearer {METRICS_TOKEN}"})
    figures: dict[str, float] = {}
    if status != 200:
        return figures
    for line in body.decode().splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        name = name.split("{", 1)[0].removeprefix("clickmint_")
        figures[name] = figures.get(name, 0.0) + float(value)
    return figures


def _histograms(worker: Worker) -> dict[str, Any]:
    """The worker's click latency and event-loop lag histograms (cumulative counts per bound in s), and the
    loop's worst lag since the previous scrape."""
    status, _, body = worker.get("/metrics", {"authorization": f"Bearer {METRICS_TOKEN}"})
    found: dict[str, Any] = {"click": {}, "lag": {}, "lag_max_s": 0.0}
    if status != 200:
        return found
    for line in body.decode().splitlines():
        if line.startswith("clickmint_request_seconds_bucket{") and 'route="c"' in line:  # /c/<code>
            kind = "click"
        elif line.startswith("clickmint_event_loop_lag_seconds_bucket{"):
            kind = "lag"
        elif line.startswith("clickmint_event_loop_lag_max_seconds "):
            found["lag_max_s"] = float(line.rsplit(" ", 1)[1])
            continue
        else:
            continue
        bound = line.split('le="', 1)[1].split('"', 1)[0]
        found[kind][float("inf") if bound == "+Inf" else float(bound)] = float(line.rsplit(" ", 1)[1])
    return found


def _p99_bound(before: dict[float, float], after: dict[float, float]) -> float | None:
    """The smallest bucket bound at or under which 99% of what the phase added lies (s); None: nothing added."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0) if bounds else 0.0
    if total <= 0:
        return None
    return next(b for b in bounds if after[b] - before.get(b, 0.0) >= 0.99 * total)


def _inside(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Where the open loop's latency is: a click's time inside the app (its Redis batch included) and how late
    the worker's loop ran a timer (the backlog every request waits behind before its work begins), as p99
    bucket bounds in ms, and the loop's worst lag in the phase."""

    def ms(bound: float | None) -> float | None:  # past the last bound (1 s): None, as no bound holds it
        return None if bound is None or bound == float("inf") else bound * 1000

    return {
        "app_p99_ms_le": ms(_p99_bound(before["click"], after["click"])),
        "loop_lag_p99_ms_le": ms(_p99_bound(before["lag"], after["lag"])),
        "loop_lag_max_ms": round(after["lag_max_s"] * 1000, 2),
    }


METRICS_TOKEN = secrets.token_urlsafe(24)


def _tracker_env(servers: Servers, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CLICKMINT_MODE", None)
    env.update(
        CLICKMINT_REDIS_URL=servers.redis_url,
        CLICKMINT_DATABASE_URL=servers.database_url,
        CLICKMINT_SECRET_KEY=secrets.token_urlsafe(30),  # 40 characters
        CLICKMINT_KEY_PREFIX=KEY_PREFIX,
        CLICKMINT_DATA_DIR=str(servers.base / "data"),
        CLICKMINT_TRACKER_PORT=str(port),
        CLICKMINT_TRACKER_WORKERS="1",
        # Every request comes from its own visitor address (traffic.py), as behind a proxy; no burst verdicts.
        CLICKMINT_TRUST_FORWARDED="true",
        CLICKMINT_BURST_LIMIT="1000000",
        CLICKMINT_METRICS_TOKEN=METRICS_TOKEN,
        CLICKMINT_METRICS_PORT="0",
    )
    return env


def _median(rounds: list[dict[str, Any]], run: str, key: str) -> float:
    return float(statistics.median(r[run][key] for r in rounds))


def _cpu_us(rounds: list[dict[str, Any]], run: str, rate: str = "rps") -> float:
    """Median CPU time of the server per answered request, in µs: the cost itself, whatever limited the rate."""
    return float(statistics.median(r[run]["cpu_server"] / r[run][rate] * 1e6 if r[run][rate] else 0.0 for r in rounds))


class _ValkeyWatch:
    """What the embedded Valkey itself did during a phase: its latency monitor's events over 5 ms (the slowest of
    each kind, e.g. "command", "expire-cycle", "aof-write") and how many keys expired, with the CPU its
    expiry cycle took. Started before the phase, read after it."""

    def __init__(self, url: str) -> None:
        import redis

        self.client = redis.Redis.from_url(url)
        self.client.config_set("latency-monitor-threshold", 5)
        self.client.execute_command("LATENCY", "RESET")
        self.before = self.client.info("stats")

    def read(self) -> dict[str, Any]:
        try:
            after = self.client.info("stats")
            events = {
                (row[0].decode() if isinstance(row[0], bytes) else str(row[0])): int(row[3])
                for row in self.client.execute_command("LATENCY", "LATEST")
            }
            self.client.config_set("latency-monitor-threshold", 0)
        finally:
            self.client.close()
        return {
            "valkey_latency_max_ms": events,
            "valkey_expired_keys": int(after.get("expired_keys", 0)) - int(self.before.get("expired_keys", 0)),
            "valkey_expire_cycle_ms": int(after.get("expire_cycle_cpu_milliseconds", 0))
            - int(self.before.get("expire_cycle_cpu_milliseconds", 0)),
        }


def _median_or_none(rounds: list[dict[str, Any]], run: str, key: str) -> float | None:
    values = [r[run][key] for r in rounds if r[run].get(key) is not None]
    return float(statistics.median_high(values)) if values else None  # a bucket bound, never between two


def _last(rounds: list[dict[str, Any]], key: str) -> Any:
    """The last round's figure of the paced phase (None when it has none)."""
    return rounds[-1]["paced"].get(key)


def _fmt_ms(value: float | None) -> str:
    return "n/a (or over 1 s)" if value is None else f"{value:g} ms"


def _ratios(rounds: list[dict[str, Any]], run: str) -> list[float]:
    """Each round's req/s of `run` over the bare app's in the same round."""
    return [r[run]["rps"] / r["base"]["rps"] if r["base"]["rps"] else 0.0 for r in rounds]


def _report(args: argparse.Namespace, runner: Runner, rounds: list[dict[str, Any]], counters: dict[str, int]) -> None:
    """The figures side by side (medians over rounds), the warnings, then the JSON line."""
    ratios = _ratios(rounds, "best")
    ratio = float(statistics.median(ratios))
    floor_rps, floor_ratio = _median(rounds, "floor", "rps"), float(statistics.median(_ratios(rounds, "floor")))
    rps, base_rps = _median(rounds, "best", "rps"), _median(rounds, "base", "rps")
    p99_paced = _median(rounds, "paced", "p99_ms")
    rss = max(max(r["best"]["rss_mb"], r["paced"]["rss_mb"]) for r in rounds)
    cpu_us, base_cpu_us, floor_cpu_us = _cpu_us(rounds, "best"), _cpu_us(rounds, "base"), _cpu_us(rounds, "floor")
    valkey_us = (  # Valkey's CPU per click (None with a configured Redis, whose CPU is not ours to measure)
        float(statistics.median(r["best"]["cpu_valkey"] / r["best"]["rps"] * 1e6 for r in rounds if r["best"]["rps"]))
        if "valkey" in rounds[0]["best"]["cpu"]
        else None
    )
    paced_us, base_paced_us = _cpu_us(rounds, "paced", "achieved_rps"), _cpu_us(rounds, "base_paced", "achieved_rps")
    events, spooled = counters["events_redis_total"], counters["events_spooled_total"]
    batches, bots = counters["batches_total"], counters["bot_events_total"]
    warnings = list(runner.warnings)
    if spooled:
        warnings.append(f"{spooled} events went to the spool (Redis slower than the budget)")
    if bots:
        warnings.append(f"{bots} clicks were classified as bots")
    meets = ratio >= TARGET_RATIO and p99_paced <= TARGET_P99_MS_AT_FRACTION
    # The smart link against the mean of the plain runs just before and after it, in the same worker.
    smart_rps = _median(rounds, "smart", "rps")
    plain_rps = float(statistics.median((r["best"]["rps"] + r["plain_again"]["rps"]) / 2 for r in rounds))
    smart_us = _cpu_us(rounds, "smart")
    plain_us = float(
        statistics.median(
            (r["best"]["cpu_server"] / r["best"]["rps"] + r["plain_again"]["cpu_server"] / r["plain_again"]["rps"])
            / 2
            * 1e6
            for r in rounds
            if r["best"]["rps"] and r["plain_again"]["rps"]
        )
    )
    smart_cost = smart_us / plain_us if plain_us else 0.0
    smart_rps_ratio = smart_rps / plain_rps if plain_rps else 0.0
    many = f" (median of {len(rounds)} rounds: {', '.join(f'{x:.2f}' for x in ratios)})" if len(rounds) > 1 else ""
    lines = [
        "",
        f"  req/s   baseline {base_rps:,.0f}   tracker {rps:,.0f}   ratio {ratio:.2f}{many} (target >= {TARGET_RATIO})",
        f"  floor (bare 302 + group-commit XADD, nothing else) {floor_rps:,.0f} req/s: ratio {floor_ratio:.2f} of the "
        f"baseline, the most any tracker that records each event before answering reaches here; tracker / floor "
        f"{rps / floor_rps if floor_rps else 0.0:.2f}",
        f"  tracker p50/p99 closed loop: {_median(rounds, 'best', 'p50_ms'):.2f} / "
        f"{_median(rounds, 'best', 'p99_ms'):.2f} ms; baseline {_median(rounds, 'base', 'p50_ms'):.2f} / "
        f"{_median(rounds, 'base', 'p99_ms'):.2f} ms",
        f"  tracker p50/p99 at {args.fraction:.0%} of max, open loop: {_median(rounds, 'paced', 'p50_ms'):.2f} / "
        f"{p99_paced:.2f} ms (target p99 <= {TARGET_P99_MS_AT_FRACTION:g} ms; counted from each request's due "
        f"time; generator dispatch lag p99 {_median(rounds, 'paced', 'dispatch_lag_p99_ms'):.2f} ms)",
        f"  bare app paced at the same rate: p50/p99 {_median(rounds, 'base_paced', 'p50_ms'):.2f} / "
        f"{_median(rounds, 'base_paced', 'p99_ms'):.2f} ms; paced at {args.fraction:.0%} of its own max: "
        f"{_median(rounds, 'base_own', 'achieved_rps'):,.0f} of {_median(rounds, 'base_own', 'target_rps'):,.0f} "
        f"req/s, p99 {_median(rounds, 'base_own', 'p99_ms'):.2f} ms",
        "  where the open loop's p99 is (its warm-up included): a click inside the app (its Redis batch "
        f"included) p99 <= "
        f"{_fmt_ms(_median_or_none(rounds, 'paced', 'app_p99_ms_le'))}; the worker's loop late to run a timer p99 <= "
        f"{_fmt_ms(_median_or_none(rounds, 'paced', 'loop_lag_p99_ms_le'))}, worst "
        f"{_fmt_ms(_median_or_none(rounds, 'paced', 'loop_lag_max_ms'))} (the rest: before the app, in the "
        "socket and uvicorn's queue)",
        f"  valkey in that phase: events over 5 ms (slowest each) {_last(rounds, 'valkey_latency_max_ms') or 'none'}; "
        f"{_last(rounds, 'valkey_expired_keys') or 0:,} keys expired, the expiry cycle's CPU "
        f"{_last(rounds, 'valkey_expire_cycle_ms') or 0:,} ms"
        if _last(rounds, "valkey_expired_keys") is not None
        else "  valkey in that phase: not watched (configured Redis)",
        f"  server CPU per request: baseline {base_cpu_us:.1f} µs, floor {floor_cpu_us:.1f} µs, tracker "
        f"{cpu_us:.1f} µs (ratio {base_cpu_us / cpu_us if cpu_us else 0.0:.2f}: the req/s ratio if the server core "
        "were the only limit)",
        f"  server CPU per request, open loop at {args.fraction:.0%}: baseline {base_paced_us:.1f} µs, tracker "
        f"{paced_us:.1f} µs (a request that arrives alone costs more than one of a closed-loop burst)",
        f"  tracker worker RSS under load: {rss:.1f} MB (peak)",
        f"  events: {events:,} to Redis in {batches:,} batches ({events / max(batches, 1):.1f} per batch), "
        f"{spooled:,} spooled; stream entries added: {counters['stream_added']:,}",
        f"  valkey cpu during tracker runs: closed loop {_median(rounds, 'best', 'cpu_valkey'):.0%} "
        f"({valkey_us:.1f} µs a request), paced {_median(rounds, 'paced', 'cpu_valkey'):.0%}"
        if valkey_us is not None
        else "  valkey cpu: not measured (configured Redis)",
        f"  smart link (5 rules, the 5th an A/B choice): {smart_rps:,.0f} req/s, {smart_rps_ratio:.3f} of the plain "
        f"click's {plain_rps:,.0f} (mean of the runs before and after); server CPU {smart_us:.1f} µs a click against "
        f"{plain_us:.1f} µs: cost ratio {smart_cost:.3f} (target <= {SMART_TARGET}: "
        f"{'met' if smart_cost <= SMART_TARGET else 'not met'})",
        *(f"  warning: {w}" for w in warnings),
        f"  targets met: {'yes' if meets else 'no'}",
    ]
    print("\n".join(lines), flush=True)
    figures: dict[str, Any] = {
        "bench": "tracker",
        "generator": runner.generator,
        "paced_generator": "python-asyncio open loop",
        "everything_on": not args.plain,
        "connections": args.connections,
        "duration_s": args.duration,
        "rounds": len(rounds),
        "rps": round(rps, 1),
        "p50_ms": round(_median(rounds, "best", "p50_ms"), 3),
        "p99_ms": round(_median(rounds, "best", "p99_ms"), 3),
        "baseline_rps": round(base_rps, 1),
        "baseline_p50_ms": round(_median(rounds, "base", "p50_ms"), 3),
        "baseline_p99_ms": round(_median(rounds, "base", "p99_ms"), 3),
        "ratio": round(ratio, 3),
        "floor_rps": round(floor_rps, 1),
        "floor_ratio": round(floor_ratio, 3),
        "tracker_floor_ratio": round(rps / floor_rps, 3) if floor_rps else 0.0,
        "floor_cpu_us_per_request": round(floor_cpu_us, 1),
        "floor_p99_ms": round(_median(rounds, "floor", "p99_ms"), 3),
        "floor_events": counters["floor_stream_added"],
        "rate_at_80pct": round(float(statistics.median(r["rate"] for r in rounds)), 1),
        "achieved_rps_at_80pct": round(_median(rounds, "paced", "achieved_rps"), 1),
        "p50_ms_at_80pct": round(_median(rounds, "paced", "p50_ms"), 3),
        "p99_ms_at_80pct": round(p99_paced, 3),
        "baseline_p50_ms_at_80pct": round(_median(rounds, "base_paced", "p50_ms"), 3),
        "baseline_p99_ms_at_80pct": round(_median(rounds, "base_paced", "p99_ms"), 3),
        "app_p99_ms_le_at_80pct": _median_or_none(rounds, "paced", "app_p99_ms_le"),
        "loop_lag_p99_ms_le_at_80pct": _median_or_none(rounds, "paced", "loop_lag_p99_ms_le"),
        "loop_lag_max_ms_at_80pct": _median_or_none(rounds, "paced", "loop_lag_max_ms"),
        "valkey_latency_max_ms_at_80pct": _last(rounds, "valkey_latency_max_ms"),
        "valkey_expired_keys_at_80pct": _last(rounds, "valkey_expired_keys"),
        "valkey_expire_cycle_ms_at_80pct": _last(rounds, "valkey_expire_cycle_ms"),
        "baseline_own_80pct_achieved_rps": round(_median(rounds, "base_own", "achieved_rps"), 1),
        "baseline_own_80pct_p99_ms": round(_median(rounds, "base_own", "p99_ms"), 3),
        "cpu_us_per_request_at_80pct": round(paced_us, 1),
        "baseline_cpu_us_per_request_at_80pct": round(base_paced_us, 1),
        "rss_mb": round(rss, 1),
        "cpu_us_per_request": round(cpu_us, 1),
        "baseline_cpu_us_per_request": round(base_cpu_us, 1),
        "cpu_ratio": round(base_cpu_us / cpu_us, 3) if cpu_us else 0.0,
        "server_cpu": round(_median(rounds, "best", "cpu_server"), 3),
        "baseline_server_cpu": round(_median(rounds, "base", "cpu_server"), 3),
        "generator_cpu": round(_median(rounds, "best", "generator_cpu"), 3),
        "baseline_generator_cpu": round(_median(rounds, "base", "generator_cpu"), 3),
        "events_redis": events,
        "events_spooled": spooled,
        "events_per_batch": round(events / max(batches, 1), 2),
        "errors": int(sum(r[k].get("errors", 0) for r in rounds for k in ("base", "floor", "best", "paced"))),
        "meets_targets": meets,
        "smart_rps": round(smart_rps, 1),
        "smart_plain_rps": round(plain_rps, 1),
        "smart_rps_ratio": round(smart_rps_ratio, 3),
        "smart_cpu_us_per_request": round(smart_us, 1),
        "smart_plain_cpu_us_per_request": round(plain_us, 1),
        "smart_cost_ratio": round(smart_cost, 3),
        "smart_meets_target": smart_cost <= SMART_TARGET,
        "warnings": warnings,
    }
    if valkey_us is not None:  # the embedded Valkey's CPU in the closed-loop tracker run
        figures["valkey_cpu"] = round(_median(rounds, "best", "cpu_valkey"), 3)
        figures["valkey_cpu_us_per_request"] = round(valkey_us, 1)
    if args.fraction != 0.8:
        figures["fraction"] = args.fraction
    if len(rounds) > 1:
        figures["ratios"] = [round(x, 3) for x in ratios]
    print(json.dumps(figures), flush=True)


def _profile(runner: Runner, worker: Worker, traffic: Traffic, others: dict[str, int], out: str) -> None:
    """py-spy record the worker at max rate, after the measured phases (sampling slows it down)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        runner.warnings.append("--profile: py-spy is not installed (pip install py-spy)")
        return
    fmt = {".json": "speedscope", ".txt": "raw"}.get(Path(out).suffix, "flamegraph")
    seconds = max(1, round(runner.duration))
    # --gil: only the thread running Python (the event loop), not idle executor threads.
    cmd = [spy, "record", "--pid", str(worker.proc.pid), "--duration", str(seconds), "--rate", "250", "--gil"]
    spy_proc = subprocess.Popen(
        [*cmd, "--format", fmt, "--output", out], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        runner.drive(worker, traffic, others, seconds + 1)
        _, err = spy_proc.communicate(timeout=30)
    finally:
        if spy_proc.poll() is None:
            spy_proc.kill()
            spy_proc.wait()
    if spy_proc.returncode != 0:
        runner.warnings.append(f"--profile: py-spy failed: {err.decode(errors='replace')[-300:]}")
    else:
        print(f"  profile of the tracker at max rate ({fmt}): {out}", flush=True)
