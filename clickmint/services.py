"""Where Redis and PostgreSQL are: the configured URLs, the servers a running `clickmint up` owns, or our own."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from clickmint.embedded import DataDirLock, EmbeddedPostgres, EmbeddedServer, EmbeddedValkey
from kernel.errors import ClickmintError
from kernel.settings import Settings

RUN_FILE = "run.json"


class ServicesError(ClickmintError):
    """The servers cannot be found or started; the message says what to do."""


@dataclass(frozen=True)
class Services:
    redis_url: str
    database_url: str
    embedded: bool
    # The embedded servers this process started (and so may restart): none when the URLs are configured
    # or another `clickmint up` owns them.
    started: tuple[EmbeddedServer, ...] = field(default=(), compare=False)


def read_run_file(data_dir: Path) -> dict[str, object] | None:
    """What a live `clickmint up` on this data dir wrote about itself, or None."""
    try:
        info = json.loads((data_dir / RUN_FILE).read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (FileNotFoundError, ValueError, KeyError, ProcessLookupError, PermissionError):
        return None


def write_run_file(data_dir: Path, info: dict[str, object]) -> None:
    path = data_dir / RUN_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, path)


@contextlib.contextmanager
def services(settings: Settings, *, start_embedded: bool = True) -> Iterator[Services]:
    """The servers to use for the duration of the block, starting embedded ones when none are configured.

    When another process (a running `clickmint up`) owns this data dir's embedded servers, they are
    used; never a second server on the same data directory.
    """
    if settings.redis_url and settings.database_url:
        yield Services(settings.redis_url, settings.database_url, embedded=False)
        return
    lock = DataDirLock(settings.data_dir)
    if not lock.acquire():
        info = read_run_file(settings.data_dir)
        if info is None:
            raise ServicesError(f"another Clickmint process holds {settings.data_dir} and is still starting; retry")
        yield Services(
            settings.redis_url or str(info["redis_url"]),
            settings.database_url or str(info["database_url"]),
            embedded=True,
        )
        return
    if not start_embedded:
        lock.release()
        raise ServicesError("no CLICKMINT_REDIS_URL / CLICKMINT_DATABASE_URL and no running `clickmint up`")
    valkey = EmbeddedValkey(settings.data_dir) if not settings.redis_url else None
    postgres = EmbeddedPostgres(settings.data_dir) if not settings.database_url else None
    try:
        redis_url = valkey.start() if valkey else settings.redis_url
        database_url = postgres.start() if postgres else settings.database_url
        assert redis_url and database_url
        started = tuple(server for server in (valkey, postgres) if server is not None)
        yield Services(redis_url, database_url, embedded=True, started=started)
    finally:
        if postgres:
            postgres.stop()
        if valkey:
            valkey.stop()
        lock.release()


def with_urls(settings: Settings, found: Services) -> Settings:
    return replace(settings, redis_url=found.redis_url, database_url=found.database_url)
