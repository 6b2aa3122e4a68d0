"""Prometheus text metrics of one tracker process: requests, latency, batches, spool, bots, refusals."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict
from collections.abc import Callable

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Metrics:
    """Counters kept in plain dicts; rendering happens only when /metrics is scraped."""

    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str]] = Counter()  # (route, outcome)
        self.latency: dict[str, list[int]] = {}  # route -> bucket counts (+Inf last)
        self.latency_sum: defaultdict[str, float] = defaultdict(float)
        self.bots: Counter[str] = Counter()
        self.refusals: Counter[str] = Counter()
        self.info: dict[str, dict[str, str]] = {}  # name -> labels of a gauge that is always 1 (versions)

    def observe(self, route: str, outcome: str, seconds: float) -> None:
        self.requests[route, outcome] += 1
        buckets = self.latency.get(route)
        if buckets is None:
            buckets = self.latency[route] = [0] * (len(LATENCY_BUCKETS_S) + 1)
        for i, bound in enumerate(LATENCY_BUCKETS_S):
            if seconds <= bound:
                buckets[i] += 1
                break
        else:
            buckets[-1] += 1
        self.latency_sum[route] += seconds

    def render(self, gauges: dict[str, float], extra: Callable[[], list[str]] | None = None) -> str:
        out = ["# TYPE clickmint_requests_total counter"]
        for (route, outcome), n in sorted(self.requests.items()):
            out.append(f'clickmint_requests_total{{route="{route}",outcome="{outcome}"}} {n}')
        out.append("# TYPE clickmint_request_seconds histogram")
        for route, buckets in sorted(self.latency.items()):
            total = 0
            for bound, n in zip((*LATENCY_BUCKETS_S, "+Inf"), buckets, strict=True):
                total += n
                out.append(f'clickmint_request_seconds_bucket{{route="{route}",le="{bound}"}} {total}')
            out.append(f'clickmint_request_seconds_count{{route="{route}"}} {total}')
            out.append(f'clickmint_request_seconds_sum{{route="{route}"}} {self.latency_sum[route]:.6f}')
        out.append("# TYPE clickmint_bot_events_total counter")
        for reason, n in sorted(self.bots.items()):
            out.append(f'clickmint_bot_events_total{{reason="{reason}"}} {n}')
        out.append("# TYPE clickmint_refusals_total counter")
        for code, n in sorted(self.refusals.items()):
            out.append(f'clickmint_refusals_total{{code="{code}"}} {n}')
        for name, labels in sorted(self.info.items()):
            pairs = ",".join(f'{key}="{value}"' for key, value in labels.items())
            out.append(f"# TYPE clickmint_{name} gauge")
            out.append(f"clickmint_{name}{{{pairs}}} 1")
        for name, value in sorted(gauges.items()):
            out.append(f"# TYPE clickmint_{name} gauge")
            out.append(f"clickmint_{name} {value}")
        if extra is not None:
            out.extend(extra())
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

    def render(self) -> list[str]:
        out = ["# TYPE clickmint_event_loop_lag_seconds histogram"]
        total = 0
        for bound, n in zip((*LOOP_LAG_BUCKETS_S, "+Inf"), self.buckets, strict=True):
            total += n
            out.append(f'clickmint_event_loop_lag_seconds_bucket{{le="{bound}"}} {total}')
        out.append(f"clickmint_event_loop_lag_seconds_count {total}")
        out.append(f"clickmint_event_loop_lag_seconds_sum {self.sum_s:.6f}")
        out.append("# TYPE clickmint_event_loop_lag_max_seconds gauge")
        out.append(f"clickmint_event_loop_lag_max_seconds {self.worst_s:.6f}")
        self.worst_s = 0.0
        return out
