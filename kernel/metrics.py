"""Metrics every worker of a service publishes, read back whole by whichever worker answers a scrape.

prometheus_client keeps the values. With PROMETHEUS_MULTIPROC_DIR set (`clickmint up` sets it for the
tracker's uvicorn workers, emptied at each start) each process writes its values to memory-mapped files
there, and a scrape reads the files of every worker: counters are summed, each gauge is merged by its
own rule (`MODES`). Without it (one process, the tests) the values stay in this process.

The hot path never calls prometheus_client: a service counts in plain dicts and `publish`es the totals
(about once a second, and before each scrape); only the increase since the last publish is written.
The text is then rendered by the service in its own layout (metric names and formats are part of the
interface), from what `collect` returns.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

ENV = "PROMETHEUS_MULTIPROC_DIR"
# How a gauge of several workers is read (Mode): "livemin" (0 when any live worker says 0, e.g. redis_up),
# "livemax", "livesum" (of the live workers), "sum" (every worker that ever ran: totals that must not
# go down when a worker is replaced), "max".
Mode = Literal["livemin", "livemax", "livesum", "sum", "max"]
Labels = tuple[str, ...]
K = TypeVar("K", bound=tuple[str, ...])


def prepare(directory: Path) -> Path:
    """An empty directory for the values of one service's workers (the old values of a previous run go)."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def multiprocess() -> bool:
    """Whether this process shares its values with the other workers (decided when prometheus_client loads)."""
    return bool(os.environ.get(ENV))


class Store:
    """One service's metrics in this process: counters with labels and gauges, published as totals."""

    def __init__(self) -> None:
        self._registry = CollectorRegistry(auto_describe=False)
        self._counters: dict[str, tuple[Counter, Labels]] = {}
        self._gauges: dict[str, Gauge] = {}
        self._sent: dict[tuple[str, tuple[str, ...]], float] = {}

    def counter(self, name: str, labelnames: Labels, totals: Mapping[K, float]) -> None:
        """Publish the totals of a counter (monotonic in this process), by label values."""
        found = self._counters.get(name)
        if found is None:
            metric = Counter(name, name, labelnames, registry=self._registry)
            found = self._counters[name] = (metric, labelnames)
        metric, _ = found
        sent = self._sent
        for labels, total in totals.items():
            key = (name, labels)
            delta = total - sent.get(key, 0)
            if delta > 0:
                (metric.labels(*labels) if labels else metric).inc(delta)
                sent[key] = total

    def gauge(self, name: str, value: float, mode: Mode) -> None:
        """Publish a gauge's value in this process; `mode` says how the workers' values are merged."""
        metric = self._gauges.get(name)
        if metric is None:
            metric = self._gauges[name] = Gauge(name, name, registry=self._registry, multiprocess_mode=mode)
        metric.set(value)

    @property
    def gauges(self) -> tuple[str, ...]:
        """The names of the gauges this process published."""
        return tuple(self._gauges)

    def collect(self) -> Collected:
        """Every sample of every worker (of this process alone without PROMETHEUS_MULTIPROC_DIR), by name."""
        if multiprocess():
            directory = os.environ[ENV]
            _forget_dead_workers(directory)
            registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(registry, directory)  # type: ignore[no-untyped-call]  # unannotated upstream
            families: Iterable[Metric] = registry.collect()
        else:
            families = self._registry.collect()
        found = Collected()
        for family in families:
            if family.type == "gauge":
                found.gauges.add(family.name)
            for sample in family.samples:
                if not sample.name.endswith("_created"):
                    found.samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
        return found


class Collected:
    """What `Store.collect` read: samples by name, as (labels, value); and which names are gauges."""

    def __init__(self) -> None:
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        self.gauges: set[str] = set()

    def get(self, name: str) -> list[tuple[dict[str, str], float]]:
        return self.samples.get(name, [])


def _forget_dead_workers(directory: str) -> None:
    """Drop the live gauges of workers that are gone (uvicorn replaces a dead worker under a new pid)."""
    pids = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        with contextlib.suppress(ValueError):
            pids.add(int(path.rsplit("_", 1)[1].removesuffix(".db")))
    for pid in pids:
        if not _alive(pid):
            mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
