"""The hot path's commands, packed by hand, are byte for byte what hiredis packs for the same arguments."""

from __future__ import annotations

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
