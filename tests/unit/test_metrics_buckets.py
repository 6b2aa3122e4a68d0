"""The tracker's latency histogram: each request lands in the first bucket whose bound it does not exceed."""

from __future__ import annotations

import pytest

from tracker.metrics import LATENCY_BUCKETS_S, Metrics


@pytest.mark.parametrize(
    ("seconds", "bucket"),
    [
        (0.0, 0),
        (0.0001, 0),
        (0.0005, 0),  # on a bound: that bucket (Prometheus's le, "less than or equal")
        (0.00050001, 1),
        (0.001, 1),
        (0.003, 3),
        (0.25, 8),
        (1.0, 9),
        (1.0001, 10),  # past every bound: +Inf
        (60.0, 10),
    ],
)
def test_a_request_lands_in_its_bucket(seconds: float, bucket: int) -> None:
    metrics = Metrics()
    metrics.observe("c", "ok", seconds)
    expected = [0] * (len(LATENCY_BUCKETS_S) + 1)
    expected[bucket] = 1
    assert metrics.latency["c"] == expected
    assert metrics.latency_sum["c"] == seconds
    assert metrics.requests["c", "ok"] == 1
