"""Expected states of a Redis (Cluster) told apart from surprises, and logged as one rate-limited line.

A failover, a restart or a paused node is something a cluster does: the client sees the connection
refused or not answered, or an error reply that names the state (CLUSTERDOWN, TRYAGAIN, MOVED, ASK,
LOADING, MASTERDOWN, READONLY). Those are logged as a one-line warning with the reason, at most once per
`every_s` per kind and place, with the count of the ones left out; never with a traceback.
"""

from __future__ import annotations

import logging
import time

import hiredis

from kernel.redis.resp import RedisUnavailable

EXPECTED_REPLIES = ("CLUSTERDOWN", "TRYAGAIN", "MOVED", "ASK", "LOADING", "MASTERDOWN", "READONLY", "BUSY ")
DEFAULT_EVERY_S = 10.0


def expected_state(exc: BaseException) -> str | None:
    """The reason, in a few words, when `exc` is an expected state of Redis; None for a surprise."""
    if isinstance(exc, RedisUnavailable | ConnectionError | TimeoutError):
        return f"unreachable ({exc})"
    if isinstance(exc, hiredis.ReplyError):
        text = str(exc)
        if text.startswith(EXPECTED_REPLIES):
            return f"{text.split(' ', 1)[0].lower()} ({text})"
    return None


class Throttled:
    """Warnings rate-limited per key: the first at once, then at most one per `every_s`, with a count."""

    def __init__(self, logger: logging.Logger, every_s: float = DEFAULT_EVERY_S) -> None:
        self._log = logger
        self._every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}  # key -> (when last logged, left out since)

    def warn(self, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless `key` was logged less than `every_s` ago; True when logged."""
        now = time.monotonic()
        when, skipped = self._last.get(key, (float("-inf"), 0))
        if now - when < self._every_s:
            self._last[key] = (when, skipped + 1)
            return False
        suffix = f" ({skipped} more like it in the last {now - when:.0f} s)" if skipped else ""
        self._log.warning(message + suffix, *args)
        self._last[key] = (now, 0)
        return True
