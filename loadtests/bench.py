"""`python -m loadtests.bench NAME [options]`: run one benchmark by name.

Each benchmark is a module with `run(argv) -> int` that measures its own baseline in the same run,
prints its figures side by side, and ends with one line holding a JSON object of them. Modules are
imported only when chosen, so one benchmark's dependencies never slow or break another.
"""

from __future__ import annotations

import importlib
import sys

# name -> (module with run(argv), one line of what it measures)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "tracker": ("loadtests.tracker_bench", "click redirects of one pinned tracker worker vs a bare ASGI 302"),
    "click": ("loadtests.click_bench", "the click's own CPU in process (no HTTP server) vs the floor's recording"),
    "ingest": ("loadtests.ingest_bench", "stream -> PostgreSQL with attribution and rollups vs a raw COPY"),
    "resp": ("loadtests.resp_bench", "the hand-written RESP client vs redis-py on the tracker's and ingest's paths"),
    "valkey": (
        "loadtests.valkey_bench",
        "Valkey's CPU per hot-path command, piece by piece: where a click's cost goes",
    ),
    "settle": ("loadtests.settle_bench", "1M conversions for 10k partners: approve, ledger, statements, close"),
    "bots": (
        "loadtests.bots_bench",
        "bot verdict per user agent: cached, new person, new bot vs the list as one regex",
    ),
    "capacity": ("loadtests.capacity", "whole system under the locust mix: highest rate at p99 <= 20 ms, then a soak"),
}


def _usage() -> str:
    lines = ["usage: python -m loadtests.bench NAME [options]   (NAME --help for its options)", "benchmarks:"]
    lines += [f"  {name:<10} {about}" for name, (_, about) in sorted(BENCHMARKS.items())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}; known: {', '.join(sorted(BENCHMARKS))}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name][0])
    return int(module.run(rest))


if __name__ == "__main__":
    sys.exit(main())
