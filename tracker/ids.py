"""Event ids: UUIDv7 (48-bit Unix milliseconds, then randomness), made without a lookup on the hot path."""

from __future__ import annotations

import os

_VERSION_VARIANT = (0x7 << 76) | (0b10 << 62)


def uuid7(unix_ms: int) -> str:
    """A UUIDv7 string for the given time; the id is the idempotency key from tracker to ledger."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & 0xFFFF_FFFF_FFFF) << 80 | _VERSION_VARIANT | (rand >> 68 & 0xFFF) << 64 | rand & ((1 << 62) - 1)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid7_ms(event_id: str) -> int:
    """The milliseconds a UUIDv7 carries."""
    return int(event_id[:8] + event_id[9:13], 16)
