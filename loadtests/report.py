"""How a benchmark ends: its figures as a table beside the baseline, then one line of JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


def finish(title: str, rows: Sequence[tuple[str, str, str]], figures: Mapping[str, object]) -> int:
    """Print the table and the JSON line a script reads; returns the exit status."""
    print(title)
    width = max(len(row[0]) for row in rows)
    for label, value, extra in rows:
        print(f"  {label:<{width}}  {value:>18}  {extra}")
    print(json.dumps(dict(figures)), flush=True)
    return 0
