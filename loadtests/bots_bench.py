"""`python -m loadtests.bench bots`: what a bot verdict costs per user agent, against its baselines.

A click or view pays `classify` on its user agent. A repeated user agent is one dict lookup (the bounded
verdict cache); a new one is scanned once by our signatures and the crawler list (tracker/crawlers.py).
Baselines in the same run: a bare dict lookup, and the list's patterns joined into one alternation, the
obvious way to use them (the package's own `is_crawler` does that in chunks of 25).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence

from loadtests.user_agents import BOTS, PEOPLE
from tracker import bots
from tracker.crawlers import LIST, LIST_VERSION


def _per_call_us(fn: Callable[[str], object], user_agents: Sequence[str], repeat: int) -> list[float]:
    """µs per call for each user agent, the best of `repeat` timings of a batch of calls."""
    out = []
    for ua in user_agents:
        best = float("inf")
        for _ in range(repeat):
            n = 50
            start = time.perf_counter()
            for _ in range(n):
                fn(ua)
            best = min(best, (time.perf_counter() - start) / n)
        out.append(best * 1e6)
    return out


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench bots", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timings per user agent, the best kept (5)")
    args = parser.parse_args(argv)
    people = [ua for _, ua in PEOPLE]
    robots = [ua for _, ua, _ in BOTS]

    bots._VERDICTS.clear()
    for ua in people:
        bots.classify("GET", ua, "")
    cached = _per_call_us(lambda ua: bots.classify("GET", ua, ""), people, args.repeat)
    table = {ua: None for ua in people}
    lookup = _per_call_us(table.get, people, args.repeat)
    new_person = _per_call_us(bots.classify_user_agent, people, args.repeat)
    new_bot = _per_call_us(bots.classify_user_agent, robots, args.repeat)
    joined = re.compile("|".join(entry["pattern"] for entry in LIST))
    naive = _per_call_us(joined.search, people[:12], 1)

    figures = {
        "list_version": LIST_VERSION,
        "patterns": len(LIST),
        "cached_us": round(statistics.median(cached), 3),
        "dict_lookup_us": round(statistics.median(lookup), 3),
        "new_person_us": round(statistics.median(new_person), 2),
        "new_person_max_us": round(max(new_person), 2),
        "new_bot_us": round(statistics.median(new_bot), 2),
        "joined_list_us": round(statistics.median(naive), 1),
    }
    print(f"crawler-user-agents {LIST_VERSION}: {len(LIST)} patterns, {len(people)} people, {len(robots)} bots")
    print(
        f"repeated user agent (cached verdict): {figures['cached_us']} µs   "
        f"baseline, a bare dict lookup: {figures['dict_lookup_us']} µs"
    )
    print(
        f"new user agent of a person: median {figures['new_person_us']} µs, max {figures['new_person_max_us']} µs   "
        f"baseline, the list joined into one regex: {figures['joined_list_us']} µs"
    )
    print(f"new user agent of a bot: median {figures['new_bot_us']} µs")
    print(json.dumps(figures))
    return 0
