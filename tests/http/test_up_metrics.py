"""`clickmint up` with two tracker workers: every scrape of the admin /metrics counts both workers' requests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from clickmint.embedded import pick_port

pytestmark = pytest.mark.timeout(180)
CLICKS = 40


@pytest.fixture
def data_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="clickmint-up-metrics-"))
    os.chmod(base, 0o755)
    yield base / "data"
    subprocess.run(["rm", "-rf", str(base)], check=False)


def test_every_scrape_sees_every_worker(data_dir: Path) -> None:
    tracker_port, metrics_port = pick_port(0), pick_port(0)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKMINT_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        CLICKMINT_DATA_DIR=str(data_dir),
        CLICKMINT_TRACKER_PORT=str(tracker_port),
        CLICKMINT_PORTAL_PORT=str(pick_port(0)),
        CLICKMINT_METRICS_PORT=str(metrics_port),
        CLICKMINT_TRACKER_WORKERS="2",
        CLICKMINT_SHARDS="2",
    )
    up = subprocess.Popen(
        [sys.executable, "-m", "clickmint", "up"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert up.stdout is not None
    try:
        lines = []
        while not (lines and lines[-1].startswith("Seed a demo")):
            line = up.stdout.readline()
            assert line, "clickmint up did not come up:\n" + "".join(lines)
            lines.append(line)
        for _ in range(CLICKS):  # new connections: uvicorn's workers share the socket and take turns
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{tracker_port}/c/no-such-link", timeout=5)
            assert refused.value.code == 404
        wanted = f'clickmint_requests_total{{route="c",outcome="unknown_link"}} {CLICKS}'
        seen = []
        deadline = time.monotonic() + 10
        while len(seen) < 6 and time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
                text = response.read().decode()
            if wanted in text.splitlines():
                seen.append(text)
            else:
                seen.clear()  # a worker publishes each second: wait until both have
                time.sleep(0.2)
        assert len(seen) == 6, "no run of six scrapes that each counted every worker's requests"
        files = sorted(p.name for p in (data_dir / "metrics" / "tracker").iterdir())
        assert len({name.rsplit("_", 1)[1] for name in files if name.startswith("counter_")}) == 2, files
    finally:
        up.send_signal(signal.SIGINT)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            up.kill()
            up.wait()
        up.stdout.close()
