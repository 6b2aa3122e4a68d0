"""Valkey's CPU per command of the tracker's hot path, piece by piece (issue 22): where a click's cost goes.

    python -m loadtests.bench valkey [--calls 30000] [--batch 500] [--repeat 2] [--block 100]

Each piece is `--calls` commands in pipelines of `--batch`, as the recorder packs them (kernel/redis/scripts.py),
every hit from a new address and visitor as in `bench tracker`; Valkey's own CPU (INFO cpu, user + sys, all
threads) per command, the better of `--repeat` runs, with AOF on (appendfsync everysec, as deployed) and then off
(the AOF's share). Pieces:
- `xadd`: a plain XADD of a ~300-byte event, the least an append costs;
- `script_empty`: EVALSHA of `return 0`, the cost of calling a script at all;
- `script_xadd`: a script that only appends the entry with its verdict fields (d, u, b);
- `view`: BURST_XADD (a view's hit counted in its address's burst list, appended with "b");
- `click`: UNIQUE_XADD (the burst list and the uniqueness `SET NX`, appended with "u", "b");
- `click_again`: UNIQUE_XADD for 1,000 visitors coming back (their keys exist; not unique);
- `capped_click`: CAPPED_UNIQUE_XADD, a click whose cap verdict the tracker took from its lease ("c");
- `lease`: the LEASE call (tracker/leases.py) of a block of four click caps (offer and partner, daily and
  lifetime), reporting `--block` used units and taking `--block` more, as a busy tracker does once a block;
  shown per click (the call's cost / `--block`) and per call. The per-batch reports between two takes are
  further calls of the same kind, not counted here.
`capped_click + lease` is a capped click's whole Valkey cost, the figure the 10 µs target is about.
Redis: CLICKMINT_REDIS_URL when set (keys `benchvalkey:*`, removed afterwards; its AOF setting is left alone,
so only the AOF-on column is measured), else an embedded Valkey.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

from clickmint.embedded import EmbeddedValkey
from kernel import keys
from kernel.caps import Limit
from kernel.redis.resp import RespConnection, pack
from kernel.redis.scripts import (
    BURST_XADD,
    CAPPED_UNIQUE_XADD,
    UNIQUE_XADD,
    burst_args,
    burst_xadd_command,
    capped_unique_xadd_command,
    unique_xadd_command,
    xadd_command,
)
from loadtests.report import finish
from loadtests.resp_bench import PAYLOAD
from tracker.leases import LEASE, CapLeases

PREFIX = "benchvalkey"
STREAM = keys.stream_key(PREFIX, 0).encode()
BURST = keys.burst_prefix(PREFIX, None).encode()
UNIQUE = keys.unique_prefix(PREFIX, 0, 4711).encode()
WINDOW_S = 30 * 86400  # the offer's uniqueness window
ARGS = burst_args(1_000_000, 10)  # as the tracker bench: no hit is a burst
EMPTY = b"return 0"
SCRIPT_XADD = b"redis.call('XADD', KEYS[1], '*', 'd', ARGV[1], 'u', '1', 'b', '0') return 0"
LIMITS = [  # the tracker bench's four click caps, limits no run reaches
    Limit("clicks", "daily", False, 10**12),
    Limit("clicks", "lifetime", False, 10**15),
    Limit("clicks", "daily", True, 10**12),
    Limit("clicks", "lifetime", True, 10**15),
]
PIECES = ("xadd", "script_empty", "script_xadd", "view", "click", "click_again", "capped_click", "lease")


def _visitor(i: int) -> bytes:
    return b"%032x" % i  # a visitor digest's length


def _commands(piece: str, n: int, start: int, block: int) -> list[bytes]:
    """The `n` commands of one pipeline of a piece; `start` numbers the addresses and visitors, so each is new."""
    if piece == "xadd":
        return [xadd_command(STREAM, PAYLOAD)] * n
    if piece in ("script_empty", "script_xadd"):
        sha = _sha(EMPTY if piece == "script_empty" else SCRIPT_XADD)
        return [pack(b"EVALSHA", sha, 1, STREAM, PAYLOAD)] * n
    if piece == "view":
        return [burst_xadd_command(BURST + b"%x" % (start + i), STREAM, ARGS, PAYLOAD) for i in range(n)]
    if piece in ("click", "click_again"):
        at = (lambda i: i) if piece == "click" else (lambda i: i % 1000)
        return [
            unique_xadd_command(
                UNIQUE + _visitor(at(start + i)), BURST + b"%x" % at(start + i), STREAM, WINDOW_S, ARGS, PAYLOAD
            )
            for i in range(n)
        ]
    if piece == "capped_click":
        return [
            capped_unique_xadd_command(
                UNIQUE + _visitor(start + i), BURST + b"%x" % (start + i), STREAM, WINDOW_S, ARGS, True, PAYLOAD
            )
            for i in range(n)
        ]
    lease = CapLeases(None, PREFIX).block(1, 2, LIMITS, time.time())
    assert lease is not None
    return [lease.command(b"bench.1", 10_000, block, block, 0)] * n


def _sha(script: bytes) -> bytes:
    return hashlib.sha1(script).hexdigest().encode()


async def _cpu(conn: RespConnection) -> float:
    (info,) = await conn.execute([pack(b"INFO", b"cpu")], timeout=5.0)
    fields = dict(line.split(":", 1) for line in info.decode().splitlines() if ":" in line)
    return float(fields["used_cpu_sys"]) + float(fields["used_cpu_user"])


async def _aof_written(conn: RespConnection) -> None:
    """Wait for the AOF that turning it on again writes: Valkey refuses to stop while it does (a 15 s stop)."""
    while True:
        (info,) = await conn.execute([pack(b"INFO", b"persistence")], timeout=5.0)
        fields = dict(line.split(":", 1) for line in info.decode().splitlines() if ":" in line)
        if fields["aof_rewrite_in_progress"] == "0" and fields["aof_rewrite_scheduled"] == "0":
            return
        await asyncio.sleep(0.05)


async def _clean(conn: RespConnection) -> None:
    after = b"0"
    while True:
        (reply,) = await conn.execute([pack(b"SCAN", after, b"MATCH", PREFIX.encode() + b":*", b"COUNT", 10_000)])
        after, found = reply
        if found:
            await conn.execute([pack(b"UNLINK", *found)], timeout=30.0)
        if after == b"0":
            return


async def measure(url: str, calls: int, batch: int, repeat: int, block: int, aof_off: bool) -> dict[str, float]:
    """Valkey CPU (µs) per command of each piece and mode, `{piece}_{aof|no_aof}_us`."""
    conn = RespConnection(url)
    await conn.connect()
    for script in (EMPTY, SCRIPT_XADD, BURST_XADD, UNIQUE_XADD, CAPPED_UNIQUE_XADD, LEASE):
        await conn.execute([pack(b"SCRIPT", b"LOAD", script)])
    figures: dict[str, float] = {}
    counter = 0
    modes = (("aof", b"yes"), ("no_aof", b"no")) if aof_off else (("aof", b""),)
    for mode, setting in modes:
        if setting:
            await conn.execute([pack(b"CONFIG", b"SET", b"appendonly", setting)])
        for piece in PIECES:
            runs = []
            for _ in range(repeat):
                await _clean(conn)
                if piece == "click_again":  # the 1,000 visitors' keys exist already
                    await conn.execute(_commands("click", 1000, 0, block), timeout=30.0)
                await asyncio.sleep(0.2)  # let the clean-up's lazy frees and AOF writes settle
                before = await _cpu(conn)
                for _ in range(calls // batch):
                    replies = await conn.execute(_commands(piece, batch, counter, block), timeout=30.0)
                    counter += batch
                    if any(isinstance(reply, Exception) for reply in replies):
                        raise RuntimeError(f"{piece}: {next(r for r in replies if isinstance(r, Exception))}")
                    if piece == "lease" and any(reply[0] != block for reply in replies):
                        raise RuntimeError(f"lease: a call was not granted its block: {replies[0]!r}")
                runs.append((await _cpu(conn) - before) / (calls // batch * batch) * 1e6)
            figures[f"{piece}_{mode}_us"] = min(runs)
    if aof_off:
        await conn.execute([pack(b"CONFIG", b"SET", b"appendonly", b"yes")])
        await _aof_written(conn)
    await _clean(conn)
    await conn.close()
    return figures


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench valkey", description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=30_000, help="commands per piece and run (default 30000)")
    parser.add_argument("--batch", type=int, default=500, help="commands per pipeline (default 500)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per piece, the better kept (default 2)")
    parser.add_argument(
        "--block", type=int, default=100, help="clicks per cap lease block (default 100, CLICKMINT_CAP_BLOCK_MAX's)"
    )
    args = parser.parse_args(argv)
    if args.calls < args.batch or min(args.batch, args.repeat, args.block) < 1:
        parser.error("--calls must be >= --batch, and --batch, --repeat, --block >= 1")
    url = os.environ.get("CLICKMINT_REDIS_URL", "")
    base = Path(tempfile.mkdtemp(prefix="clickmint-valkey-bench-"))
    valkey = None
    try:
        if not url:
            os.chmod(base, 0o755)
            valkey = EmbeddedValkey(base, port=0)
            url = valkey.start()
        f = asyncio.run(measure(url, args.calls, args.batch, args.repeat, args.block, aof_off=valkey is not None))
    finally:
        if valkey is not None:
            valkey.stop()
        shutil.rmtree(base, ignore_errors=True)
    modes = ("aof", "no_aof") if "xadd_no_aof_us" in f else ("aof",)
    for mode in modes:  # the lease's call, then its share of a click; and a capped click's whole cost
        f[f"lease_call_{mode}_us"] = f[f"lease_{mode}_us"]
        f[f"lease_{mode}_us"] /= args.block
        f[f"capped_click_total_{mode}_us"] = f[f"capped_click_{mode}_us"] + f[f"lease_{mode}_us"]

    def row(label: str, name: str, note: str = "") -> tuple[str, str, str]:
        off = f" AOF off {f[f'{name}_no_aof_us']:.2f} µs" if f"{name}_no_aof_us" in f else ""
        return (label, f"{f[f'{name}_aof_us']:.2f} µs CPU", (off + note).strip())

    rows = [row(piece, piece) for piece in PIECES if piece != "lease"]
    rows.append(row("lease (a click's share)", "lease", f" (a call / {args.block} clicks a block)"))
    rows.append(row("lease (a call)", "lease_call"))
    rows.append(row("capped_click + lease", "capped_click_total", " (a capped click in all)"))
    title = (
        f"valkey: Valkey's CPU per command, {args.calls} commands in pipelines of {args.batch}, best of {args.repeat}"
    )
    figures: dict[str, object] = {key: round(value, 2) for key, value in f.items()}
    figures["block"] = args.block
    return finish(title, rows, figures)
