"""The hot path's commands, packed by hand, are byte for byte what hiredis packs for the same arguments."""

from __future__ import annotations

from kernel.caps import Limit
from kernel.redis.resp import pack
from kernel.redis.scripts import (
    BURST_XADD_SHA,
    CAPPED_UNIQUE_XADD_SHA,
    UNIQUE_XADD_SHA,
    burst_args,
    burst_xadd_command,
    capped_unique_xadd_command,
    unique_xadd_command,
    xadd_command,
)
from tracker.leases import LEASE_SHA, CapLeases

STREAM = b"cm:events:{3}"
PAYLOAD = b'{"type":"click","sub1":"{x}"}'
UNIQ = b"cm:uniq:{3}:7:0123456789abcdef01234567"
BURST = b"cm:burst:89abcdef0123456701234567"


def test_xadd() -> None:
    assert xadd_command(STREAM, PAYLOAD) == pack(b"XADD", STREAM, b"*", b"d", PAYLOAD)


def test_burst_xadd() -> None:
    command = burst_xadd_command(BURST, STREAM, burst_args(30, 10), PAYLOAD)
    assert command == pack(b"EVALSHA", BURST_XADD_SHA, 2, BURST, STREAM, 30, 10_000, PAYLOAD)


def test_unique_xadd() -> None:
    for window in (60, 86400):
        command = unique_xadd_command(UNIQ, BURST, STREAM, window, burst_args(5, 1), PAYLOAD)
        assert command == pack(b"EVALSHA", UNIQUE_XADD_SHA, 3, UNIQ, BURST, STREAM, window, 5, 1000, PAYLOAD)


def test_capped_unique_xadd() -> None:
    for within, verdict in ((True, b"1"), (False, b"0")):
        command = capped_unique_xadd_command(UNIQ, BURST, STREAM, 3600, burst_args(30, 10), within, PAYLOAD)
        expected = pack(b"EVALSHA", CAPPED_UNIQUE_XADD_SHA, 3, UNIQ, BURST, STREAM, 3600, 30, 10_000, verdict, PAYLOAD)
        assert command == expected


def test_lease() -> None:
    limits = (Limit("clicks", "daily", False, 10**12), Limit("clicks", "lifetime", True, 5))
    block = CapLeases(None, "cm").block(1, 3, limits, 0.0)
    assert block is not None
    for lease, life, want, used, drop in ((b"ab.1.2", 10_000, 100, 0, 0), (b"x", 200, -1, -3, 5), (b"y", 1, 0, 7, 0)):
        args = [value for limit, ttl in block.limits for value in (limit, ttl, used)]
        expected = pack(b"EVALSHA", LEASE_SHA, 4, *block.head, lease, life, want, drop, *args)
        assert block.command(lease, life, want, used, drop) == expected
