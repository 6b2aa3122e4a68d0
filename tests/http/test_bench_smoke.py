"""`python -m loadtests.bench tracker` and `... ingest` end to end, tiny: they run, measure every phase, and
the last line is their JSON. No timing is asserted: the figures only have to exist and to count real work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(150)
ROOT = Path(__file__).resolve().parents[2]


def _bench(*args: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLICKMINT_")}  # embedded servers of its own
    result = subprocess.run(
        [sys.executable, "-m", "loadtests.bench", *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=140
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stdout


def test_ingest_bench_measures_ingest_the_raw_copy_and_the_floor() -> None:
    figures, out = _bench("ingest", "--events", "3000")
    assert figures["stored"] == 3000 and figures["conversions"] > 0  # ingest derived conversions
    assert figures["floor_stored"] == 3000  # the floor stored every event again, into an emptied table
    for name in ("events_per_s", "copy_rows_per_s", "floor_events_per_s"):
        assert figures[name] > 0, name
    assert figures["floor_copy_ratio"] > 0 and 0 <= figures["derive_share"] < 1
    assert "floor: the same ingest storing only (no derive)" in out
    # CPU per event of each phase: ingest's process, the embedded PostgreSQL's and Valkey's processes (Valkey's
    # few ms in so small a run can round to 0 clock ticks).
    for phase in ("ingest", "floor"):
        assert figures[f"{phase}_cpu_us"] > 0 and figures[f"{phase}_pg_cpu_us"] > 0, phase
        assert figures[f"{phase}_valkey_cpu_us"] >= 0, phase
    assert figures["cpu_floor_ratio"] > 0 and "ratio floor / ingest in CPU" in out
    # The loyalty phases: the same mix naming customers, without and with a programme; points were earned.
    assert figures["loyalty_lots"] > 0 and figures["loyalty_ratio"] > 0
    assert "ratio ingest with loyalty / without" in out


def test_ingest_bench_without_the_floor() -> None:
    figures, out = _bench("ingest", "--events", "500", "--no-floor", "--no-loyalty")
    assert figures["stored"] == 500
    assert "floor_events_per_s" not in figures and "floor:" not in out
    assert "loyalty_ratio" not in figures


def test_tracker_bench_measures_the_bare_app_the_floor_and_the_tracker() -> None:
    figures, out = _bench("tracker", "--duration", "1", "--warmup", "0.2", "--connections", "8")
    assert figures["baseline_rps"] > 0 and figures["floor_rps"] > 0 and figures["rps"] > 0
    assert figures["floor_events"] > 0  # the floor app appended its events to its streams
    assert figures["events_redis"] > 0 and figures["everything_on"] is True
    assert 0 < figures["floor_ratio"] and 0 < figures["ratio"]
    assert "floor (bare 302 + group-commit XADD)" in out
    assert figures["smart_rps"] > 0 and figures["smart_cost_ratio"] > 0  # the smart-link phase ran its rules
    assert "smart link, 5 rules, closed loop" in out
    # where the open loop's time went: the worker's own histograms of the paced phase (a bucket bound in ms)
    assert figures["app_p99_ms_le_at_80pct"] > 0 and figures["loop_lag_p99_ms_le_at_80pct"] > 0
    assert "where the open loop's p99 is" in out
    if figures.get("valkey_cpu_us_per_request") is not None:  # the embedded Valkey: its own latency watched
        assert figures["valkey_expired_keys_at_80pct"] >= 0
        assert isinstance(figures["valkey_latency_max_ms_at_80pct"], dict)


def test_click_bench_measures_the_click_and_the_floor_in_process() -> None:
    figures, out = _bench("click", "--clicks", "128", "--runs", "1", "--warmup", "64", "--concurrency", "8")
    assert figures["clicks"] == 128
    assert figures["click_cpu_us"] > 0 and figures["floor_cpu_us"] > 0
    assert figures["logic_cpu_us"] == round(figures["click_cpu_us"] - figures["floor_cpu_us"], 1)
    assert "the click's logic above the floor" in out


def test_bots_bench_measures_cached_new_and_the_joined_list() -> None:
    figures, out = _bench("bots", "--repeat", "1")
    assert figures["patterns"] > 1000 and figures["list_version"]
    for name in ("cached_us", "dict_lookup_us", "new_person_us", "new_bot_us", "joined_list_us"):
        assert figures[name] > 0, name
    assert "baseline, the list joined into one regex" in out


def test_valkey_bench_measures_every_piece_with_and_without_the_aof() -> None:
    figures, out = _bench("valkey", "--calls", "1000", "--repeat", "1", "--block", "50")
    pieces = ("xadd", "script_empty", "script_xadd", "view", "click", "click_again", "capped_click", "lease")
    for piece in pieces:  # a script that failed (or a lease not granted its block) would have stopped the run
        assert figures[f"{piece}_aof_us"] > 0 and figures[f"{piece}_no_aof_us"] > 0, piece
    assert figures["block"] == 50
    assert abs(figures["lease_aof_us"] * 50 - figures["lease_call_aof_us"]) < 0.5  # a call's share, both rounded
    assert "capped_click + lease" in out
