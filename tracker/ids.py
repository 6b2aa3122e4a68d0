"""Event ids: UUIDv7 (48-bit Unix milliseconds, then randomness), made without a lookup on the hot path.

Clock steps: the wall clock read when the process started, carried forward by the monotonic clock
(which no step moves), is a floor for every id's time. When the wall clock steps back (an operator, a
VM restore, a bad NTP step), ids carry on from that floor, so they never go backwards and still say
when the event happened; ingest dates an event by its id when the id is later than its `ts` (see
kernel/events.py). A forward step is followed, and so is the step back that corrects it (back to the
floor, not below); ingest refuses a time far ahead of its own clock. The start is the trust root: a
process started with a clock far ahead keeps ids that far ahead until it is restarted.
"""

from __future__ import annotations

import os
import time

_VERSION_VARIANT = (0x7 << 76) | (0b10 << 62)


_pool = b""
_at = 0
_floor_base = 0  # wall clock minus monotonic clock at start, in ms: the floor is this plus the monotonic clock


def _anchor() -> None:
    global _floor_base
    _floor_base = time.time_ns() // 1_000_000 - time.monotonic_ns() // 1_000_000


def _forget_pool() -> None:
    # A forked child must never hand out its parent's random bytes: equal ids would be dropped as duplicates.
    global _pool, _at
    _pool, _at = b"", 0
    _anchor()


_anchor()


os.register_at_fork(after_in_child=_forget_pool)


def _random10() -> bytes:
    # One getrandom() call per 409 ids instead of one per id.
    global _pool, _at
    if _at + 10 > len(_pool):
        _pool, _at = os.urandom(4096), 0
    _at += 10
    return _pool[_at - 10 : _at]


def uuid7(unix_ms: int) -> str:
    """A UUIDv7 string for the given time (now); the id is the idempotency key from tracker to ledger.

    The id's time is `unix_ms`, or the floor (the start's wall clock carried forward) if the wall clock
    stepped back below it.
    """
    floor = _floor_base + time.monotonic_ns() // 1_000_000
    if unix_ms < floor:
        unix_ms = floor
    rand = int.from_bytes(_random10(), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80 | _VERSION_VARIANT | (rand >> 68 & 0xFFF) << 64 | rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_ms(event_id: str) -> int:
    """The milliseconds a UUIDv7 carries."""
    return int(event_id[:8] + event_id[9:13], 16)
