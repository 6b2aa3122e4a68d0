"""The local spool: an append-only file per tracker process that holds events while Redis cannot.

Each line is `<shard> <orjson payload>\n`, or for a click whose uniqueness Redis could not decide
`<shard> <orjson payload>\t<uniqueness key> <window s>\n` (the replay decides it: parse_entries); a batch
is written and fsynced before its requests are answered. A process holds an flock on its active file;
the replayer takes files nobody holds (a rotated file, or the file of a process that died), so no line
is lost and, because ingest is idempotent on the event id, a line replayed twice is harmless.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

ACTIVE_SUFFIX = ".log"
READY_SUFFIX = ".ready"
# The errors that mean "no room": the disk (or a quota, or a file-size limit) is full, not broken.
_FULL_ERRNOS = frozenset((errno.ENOSPC, errno.EDQUOT, errno.EFBIG))
_PROBE = b"\0" * 65536  # room for a typical batch, not just for one byte


class SpoolError(OSError):
    """The spool cannot be written (full disk, permissions); the tracker reports it on /readyz."""


class Spool:
    """One process's active spool file plus the directory the replayer drains."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fd: int | None = None
        self._path: Path | None = None
        self.lines_written = 0  # since this file was opened; 0 means nothing to rotate
        self.error: str | None = None  # why the last write or probe failed; None once one succeeds
        self.full = False  # the last failure was a full disk, quota or file-size limit

    def _failed(self, exc: OSError) -> None:
        self.error = f"{exc.strerror or exc} ({self.directory})"
        self.full = exc.errno in _FULL_ERRNOS

    def writable(self) -> bool:
        """Probe: is there room in the spool directory for a batch right now? (Written, not fsynced.)"""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe = self.directory / f".probe-{os.getpid()}"
            fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                written = 0
                while written < len(_PROBE):  # a nearly full disk takes part of it, then refuses the rest
                    written += os.write(fd, _PROBE[written:])
            finally:
                os.close(fd)
                probe.unlink(missing_ok=True)
        except OSError as exc:
            self._failed(exc)
            return False
        self.error, self.full = None, False
        return True

    def _open(self) -> int:
        if self._fd is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{os.getpid()}-{time.time_ns()}{ACTIVE_SUFFIX}"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fd, self._path, self.lines_written = fd, path, 0
        return self._fd

    def append(self, lines: list[bytes]) -> None:
        """Write and fsync one batch (blocking: call it from a worker thread).

        A batch that fails (full disk) is cut off the file again: a torn line followed by the next
        batch's lines would otherwise read back as one garbled line and lose a good event.
        """
        fd = size = None
        try:
            fd = self._open()
            size = os.fstat(fd).st_size
            data = b"".join(lines)
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError as exc:
            self._failed(exc)
            if fd is not None and size is not None:
                try:
                    os.ftruncate(fd, size)
                except OSError:
                    self.rotate()  # cannot cut it: a fresh file, the torn tail is skipped at replay
            raise SpoolError(f"cannot write the spool in {self.directory}: {exc}") from exc
        self.error, self.full = None, False
        self.lines_written += len(lines)

    def rotate(self) -> None:
        """Close the active file and hand it to the replayer."""
        fd, path = self._fd, self._path
        if fd is None or path is None:
            return
        self._fd = self._path = None
        os.replace(path, path.with_suffix(READY_SUFFIX))
        os.close(fd)

    def close(self) -> None:
        self.rotate()

    def claim(self) -> Iterator[tuple[Path, int]]:
        """Files ready to replay, each yielded with an flock held on it; the caller unlinks and closes."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            if not (name.endswith(READY_SUFFIX) or name.endswith(ACTIVE_SUFFIX)):
                continue
            path = self.directory / name
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # a live process still writes it
                continue
            if not path.exists():  # replayed and unlinked by someone else between listdir and flock
                os.close(fd)
                continue
            yield path, fd

    def depth(self) -> int:
        """Bytes waiting in the spool directory (all files), for /metrics."""
        total = 0
        try:
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if entry.name.endswith((ACTIVE_SUFFIX, READY_SUFFIX)):
                        total += entry.stat().st_size
        except FileNotFoundError:
            return 0
        return total


def parse_lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(shard, payload) per complete line; a torn last line (a crash mid-write, never acknowledged) is skipped."""
    for shard, payload, _ in parse_entries(data):
        yield shard, payload


def parse_entries(data: bytes) -> Iterator[tuple[int, bytes, tuple[bytes, int] | None]]:
    """(shard, payload, uniqueness) per complete line. A line is `shard payload`, and for a click whose
    uniqueness Redis could not decide `shard payload<TAB>key window`: the uniqueness key and window (s) the
    replay decides it with (orjson never writes a raw tab). Only complete lines are read: a torn last line
    (a crash mid-write, never acknowledged) is skipped whole, even when what was written of it parses (a
    window cut short, a line cut before its uniqueness key)."""
    for line in data[: data.rfind(b"\n") + 1].split(b"\n"):
        shard, sep, rest = line.partition(b" ")
        if not sep or not shard.isdigit():
            continue
        payload, tab, pending = rest.partition(b"\t")
        if not (payload.startswith(b"{") and payload.endswith(b"}")):
            continue
        if not tab:
            yield int(shard), payload, None
            continue
        key, space, window = pending.rpartition(b" ")
        if space and key and window.isdigit():
            yield int(shard), payload, (key, int(window))
