"""`python -m loadtests.capacity` end to end, tiny: `clickmint up`, one step at 50 req/s, a few seconds of soak."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)
ROOT = Path(__file__).resolve().parents[2]


def test_capacity_runs_and_reports_one_json_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKMINT_", "LOCUST_"))}
    command = [sys.executable, "-m", "loadtests.capacity", "--rates", "50", "--step-s", "5", "--warmup-s", "1"]
    command += ["--soak-min", "0.05", "--interval-s", "1.5", "--partners", "3", "--workers", "1", "--generators", "1"]
    command += ["--out", str(tmp_path)]
    result = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["errors"] == 0, result.stdout[-3000:]
    assert figures["soak_rps"] > 0 and figures["soak_minutes"] > 0
    assert figures["rss_start_mb"] > 0 and figures["rss_end_mb"] > 0
    assert figures["events_in_db"] >= figures["tracker_requests_answered"] > 0  # nothing answered went missing
    with (tmp_path / "steps.csv").open(newline="") as handle:
        steps = list(csv.DictReader(handle))
    assert [float(s["rate"]) for s in steps] == [50.0]
    assert int(steps[0]["failures"]) == 0 and int(steps[0]["requests"]) > 0
    assert (tmp_path / "soak.csv").read_text().count("\n") >= 2  # the start and at least one interval
    assert json.loads((tmp_path / "summary.json").read_text())["summary"] == figures
