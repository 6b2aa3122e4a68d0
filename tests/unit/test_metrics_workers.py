"""Several tracker workers, one scrape: every worker's counters are summed and each gauge merged by its rule.

Real processes sharing PROMETHEUS_MULTIPROC_DIR, as uvicorn's workers under `clickmint up` do; whichever
one answers the scrape reads them all. A worker that dies keeps its counters and totals in, not its live gauges.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

WORKER = """
import sys
from tracker.metrics import Metrics
requests, redis_up, spooled = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
metrics = Metrics()
for _ in range(requests):
    metrics.observe("c", "ok", 0.0001)
metrics.bots["burst"] += requests
metrics.publish({"redis_up": redis_up, "spool_bytes": 100.0, "events_spooled_total": float(spooled)}, {8: requests})
print("published", flush=True)
sys.stdin.read()  # alive until the test closes stdin
"""
SCRAPE = """
from tracker.metrics import LoopLag, Metrics
metrics = Metrics()
metrics.publish({"redis_up": 1.0, "spool_bytes": 0.0, "events_spooled_total": 0.0}, {})
print(metrics.render(LoopLag().render), end="")
"""


def _start(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, *args], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert worker.stdout is not None and worker.stdout.readline() == "published\n"
    return worker


def _scrape(env: dict[str, str]) -> set[str]:
    done = subprocess.run([sys.executable, "-c", SCRAPE], env=env, capture_output=True, text=True, check=True)
    return set(done.stdout.splitlines())


def test_one_scrape_sees_every_worker(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    one = _start(env, "1", "1", "5")
    two = _start(env, "2", "0", "7")  # this one cannot reach Redis
    try:
        both = _scrape(env)
        assert {
            'clickmint_requests_total{route="c",outcome="ok"} 3',  # 1 + 2, summed
            'clickmint_request_seconds_bucket{route="c",le="0.0005"} 3',
            'clickmint_request_seconds_count{route="c"} 3',
            'clickmint_bot_events_total{reason="burst"} 3',
            'clickmint_batch_size_bucket{le="8"} 3',
            "clickmint_redis_up 0.0",  # any live worker without Redis: 0
            "clickmint_spool_bytes 200.0",  # of the live workers
            "clickmint_events_spooled_total 12.0",
        } <= both
        two.kill()
        two.wait()
        after = _scrape(env)
        assert {
            'clickmint_requests_total{route="c",outcome="ok"} 3',  # a dead worker's counts stay
            "clickmint_events_spooled_total 12.0",  # and its totals
            "clickmint_redis_up 1.0",  # its live gauges go
            "clickmint_spool_bytes 100.0",
        } <= after
    finally:
        for worker in (one, two):
            if worker.poll() is None:
                assert worker.stdin is not None
                worker.stdin.close()
                worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()


def test_without_the_directory_a_process_sees_itself(tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    worker = _start(env, "4", "1", "1")
    try:
        alone = _scrape(env)
    finally:
        assert worker.stdin is not None and worker.stdout is not None
        worker.stdin.close()
        worker.wait()
        worker.stdout.close()
    assert "clickmint_redis_up 1.0" in alone
    assert not any(line.startswith("clickmint_requests_total{") for line in alone)
