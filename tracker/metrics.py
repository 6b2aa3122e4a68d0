"""Prometheus text metrics of the tracker's workers: requests, latency, batches, spool, bots, refusals."""

from __future__ import annotations

import asyncio
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping

from kernel.metrics import Collected, Mode, Store

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


# How each gauge of several uvicorn workers is read (kernel/metrics.py): a gauge not named here is "livemax".
GAUGE_MODES: dict[str, Mode] = {
    "spool_bytes": "livesum",
    "redis_up": "livemin",  # 0 when any worker cannot reach Redis
    "spool_writable": "livemin",
    "spool_full": "livemax",
    "config_version": "livemin",  # the oldest configuration a worker still serves
    "events_redis_total": "sum",  # totals: a replaced worker's count stays in
    "events_spooled_total": "sum",
    "events_replayed_total": "sum",
    "batches_total": "sum",
    "spool_write_errors_total": "sum",
    "events_lost_total": "sum",
    "scripts_reloaded_total": "sum",
    "cap_lease_calls_total": "sum",
    "cap_units_granted_total": "sum",
    "cap_lease_failures_total": "sum",
}
_LE = (*(str(bound) for bound in LATENCY_BUCKETS_S), "+Inf")


class Metrics:
    """Counters kept in plain dicts, published to the workers' shared store (kernel/metrics.py) about once a
    second and at each scrape; the text is rendered from the store, so any worker's answer covers all."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()  # (route, outcome)
        self.latency: dict[str, list[int]] = {}  # route -> bucket counts (+Inf last)
        self.latency_sum: defaultdict[str, float] = defaultdict(float)
        self.bots: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.info: dict[str, dict[str, str]] = {}  # name -> labels of a gauge that is always 1 (versions)
        self.store = Store()

    def observe(self, route: str, outcome: str, seconds: float) -> None:
        self.requests[route, outcome] += 1
        buckets = self.latency.get(route)
        if buckets is None:
            buckets = self.latency[route] = [0] * (len(LATENCY_BUCKETS_S) + 1)
        buckets[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1  # the first bound >= seconds; past them all, +Inf
        self.latency_sum[route] += seconds

    def publish(self, gauges: Mapping[str, float], batch_sizes: Mapping[int, int]) -> None:
        """This process's totals and gauges to the store."""
        store = self.store
        store.counter("clickmint_requests", ("route", "outcome"), self.requests)
        latency = {(route, le): n for route, counts in self.latency.items() for le, n in zip(_LE, counts, strict=True)}
        store.counter("clickmint_request_seconds_in", ("route", "le"), latency)
        store.counter("clickmint_request_seconds_spent", ("route",), {(r,): s for r, s in self.latency_sum.items()})
        store.counter("clickmint_bot_events", ("reason",), {(r,): n for r, n in self.bots.items()})
        store.counter("clickmint_refusals", ("code",), {(c,): n for c, n in self.refusals.items()})
        store.counter("clickmint_batch_size_in", ("le",), {(str(b),): n for b, n in batch_sizes.items()})
        for name, value in gauges.items():
            store.gauge(f"clickmint_{name}", value, GAUGE_MODES.get(name, "livemax"))

    def render(self, extra: Callable[[Collected], list[str]] | None = None) -> str:
        """The Prometheus text of every worker's published values (call `publish` first)."""
        seen = self.store.collect()

        def counts(name: str, *labels: str) -> dict[tuple[str, ...], float]:
            return {tuple(found[label] for label in labels): value for found, value in seen.get(name)}

        out = ["# TYPE clickmint_requests_total counter"]
        for (route, outcome), n in sorted(counts("clickmint_requests_total", "route", "outcome").items()):
            out.append(f'clickmint_requests_total{{route="{route}",outcome="{outcome}"}} {int(n)}')
        out.append("# TYPE clickmint_request_seconds histogram")
        latency = counts("clickmint_request_seconds_in_total", "route", "le")
        spent = counts("clickmint_request_seconds_spent_total", "route")
        for route in sorted({route for route, _ in latency}):
            total = 0
            for le in _LE:
                total += int(latency.get((route, le), 0))
                out.append(f'clickmint_request_seconds_bucket{{route="{route}",le="{le}"}} {total}')
            out.append(f'clickmint_request_seconds_count{{route="{route}"}} {total}')
            out.append(f'clickmint_request_seconds_sum{{route="{route}"}} {spent.get((route,), 0.0):.6f}')
        out.append("# TYPE clickmint_bot_events_total counter")
        for (reason,), n in sorted(counts("clickmint_bot_events_total", "reason").items()):
            out.append(f'clickmint_bot_events_total{{reason="{reason}"}} {int(n)}')
        out.append("# TYPE clickmint_refusals_total counter")
        for (code,), n in sorted(counts("clickmint_refusals_total", "code").items()):
            out.append(f'clickmint_refusals_total{{code="{code}"}} {int(n)}')
        for name, labels in sorted(self.info.items()):
            pairs = ",".join(f'{key}="{value}"' for key, value in labels.items())
            out.append(f"# TYPE clickmint_{name} gauge")
            out.append(f"clickmint_{name}{{{pairs}}} 1")
        for name in sorted(n for n in seen.gauges if n != "clickmint_event_loop_lag_max_seconds"):
            value = next((v for _, v in seen.get(name)), 0.0)
            out.append(f"# TYPE {name} gauge")
            out.append(f"{name} {value}")
        if extra is not None:
            out.extend(extra(seen))
        out.append("# TYPE clickmint_batch_size histogram")
        total = 0
        sizes = counts("clickmint_batch_size_in_total", "le")
        for (le,), n in sorted(sizes.items(), key=lambda item: int(item[0][0])):
            total += int(n)
            bound = "+Inf" if int(le) >= 1 << 62 else le
            out.append(f'clickmint_batch_size_bucket{{le="{bound}"}} {total}')
        return "\n".join(out) + "\n"


LOOP_LAG_BUCKETS_S = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)


class LoopLag:
    """How late the event loop wakes a timer: the tracker's own backlog, told apart from a slow Redis.

    Every `interval` s a timer is due; how late it runs is the time a request that arrived then waited
    for the loop before any of its work began. Kept as a histogram and as the worst since the last
    scrape. Cheap: ten wake-ups a second.
    """

    def __init__(self, interval_s: float = 0.1) -> None:
        self.interval_s = interval_s
        self.buckets = [0] * (len(LOOP_LAG_BUCKETS_S) + 1)
        self.sum_s = 0.0
        self.worst_s = 0.0  # since the last scrape

    def observe(self, lag_s: float) -> None:
        for i, bound in enumerate(LOOP_LAG_BUCKETS_S):
            if lag_s <= bound:
                self.buckets[i] += 1
                break
        else:
            self.buckets[-1] += 1
        self.sum_s += lag_s
        self.worst_s = max(self.worst_s, lag_s)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self.observe(max(0.0, loop.time() - due))

    def publish(self, store: Store) -> None:
        """This loop's lags to the store: the buckets summed over workers, the worst the worst of any."""
        labelled = {
            (le,): n for le, n in zip((*(str(b) for b in LOOP_LAG_BUCKETS_S), "+Inf"), self.buckets, strict=True)
        }
        store.counter("clickmint_event_loop_lag_in", ("le",), labelled)
        store.counter("clickmint_event_loop_lag_spent", (), {(): self.sum_s})
        store.gauge("clickmint_event_loop_lag_max_seconds", self.worst_s, "livemax")

    def render(self, seen: Collected) -> list[str]:
        """The lag histogram of every worker and the worst since this worker's last scrape (then reset)."""
        counts = {found["le"]: value for found, value in seen.get("clickmint_event_loop_lag_in_total")}
        out = ["# TYPE clickmint_event_loop_lag_seconds histogram"]
        total = 0
        for bound in (*LOOP_LAG_BUCKETS_S, "+Inf"):
            total += int(counts.get(str(bound), 0))
            out.append(f'clickmint_event_loop_lag_seconds_bucket{{le="{bound}"}} {total}')
        spent = sum(value for _, value in seen.get("clickmint_event_loop_lag_spent_total"))
        worst = max((value for _, value in seen.get("clickmint_event_loop_lag_max_seconds")), default=0.0)
        out.append(f"clickmint_event_loop_lag_seconds_count {total}")
        out.append(f"clickmint_event_loop_lag_seconds_sum {spent:.6f}")
        out.append("# TYPE clickmint_event_loop_lag_max_seconds gauge")
        out.append(f"clickmint_event_loop_lag_max_seconds {worst:.6f}")
        self.worst_s = 0.0
        return out
