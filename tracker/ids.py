"""Event ids: UUIDv7 (48-bit Unix milliseconds, then randomness), made without a lookup on the hot path."""

from __future__ import annotations

import os

_VERSION_VARIANT = (0x7 << 76) | (0b10 << 62)


_pool = b""
_at = 0


def _forget_pool() -> None:
    # A forked child must never hand out its parent's random bytes: equal ids would be dropped as duplicates.
    global _pool, _at
    _pool, _at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def _random10() -> bytes:
    # One getrandom() call per 409 ids instead of one per id.
    global _pool, _at
    if _at + 10 > len(_pool):
        _pool, _at = os.urandom(4096), 0
    _at += 10
    return _pool[_at - 10 : _at]


def uuid7(unix_ms: int) -> str:
    """A UUIDv7 string for the given time; the id is the idempotency key from tracker to ledger."""
    rand = int.from_bytes(_random10(), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80 | _VERSION_VARIANT | (rand >> 68 & 0xFFF) << 64 | rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_ms(event_id: str) -> int:
    """The milliseconds a UUIDv7 carries."""
    return int(event_id[:8] + event_id[9:13], 16)
