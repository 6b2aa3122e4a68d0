"""Settings every part of Clickmint shares: where the servers are, where data lives, the secret."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from kernel.env import Env, SettingsError
from kernel.redis.nodes import CLUSTER_MODES, DEFAULT_CLUSTER_MODE, node_urls

DEFAULT_HOST = "127.0.0.1"
DEFAULT_TRACKER_PORT = 8000
DEFAULT_PORTAL_PORT = 8001
DEFAULT_SHARDS = 4
DEFAULT_DATA_DIR = ".clickmint"
MIN_SECRET_LENGTH = 32


@dataclass(frozen=True)
class Settings:
    """The shared settings, read once by `from_env` and passed in explicitly."""

    mode: str  # "development" (a generated secret is allowed) or "production" (everything explicit)
    redis_url: str | None  # None: `clickmint up` starts an embedded Valkey
    database_url: str | None  # None: `clickmint up` starts an embedded PostgreSQL
    data_dir: Path  # embedded server data, the tracker's spool, the run file
    secret_key: str = field(repr=False)  # signs click ids and sessions; never printed
    host: str  # interface the tracker and portal listen on
    tracker_port: int
    portal_port: int
    tracker_workers: int  # uvicorn workers for the tracker; default one per core
    shards: int  # event stream shards cm:events:{0..shards-1}
    key_prefix: str  # prefix of every Redis key, so tests and tenants can share one server
    ingest_processes: int = 1  # `clickmint up` runs this many ingest processes, each on its share of the shards
    redis_cluster: str = DEFAULT_CLUSTER_MODE  # is redis_url a Redis Cluster: auto (ask its nodes), yes, no

    @classmethod
    def from_env(cls, env: Env | None = None) -> Settings:
        env = env or Env()
        mode = env.choice("MODE", "development", ("development", "production"))
        data_dir = Path(env.str("DATA_DIR", DEFAULT_DATA_DIR)).expanduser().absolute()
        secret = env.raw("SECRET_KEY")
        if secret is None:
            if mode == "production":
                raise SettingsError("CLICKMINT_SECRET_KEY is required in production mode (at least 32 characters)")
            secret = _development_secret(data_dir)
        elif len(secret) < MIN_SECRET_LENGTH:
            raise SettingsError(f"CLICKMINT_SECRET_KEY is too short: use at least {MIN_SECRET_LENGTH} characters")
        redis_url = env.url("REDIS_URL", ("redis", "rediss", "unix"))
        if redis_url is not None:
            try:
                node_urls(redis_url)  # one server, or several nodes of a cluster separated by commas
            except ValueError as exc:
                raise SettingsError(f"CLICKMINT_REDIS_URL: {exc}") from None
        database_url = env.url("DATABASE_URL", ("postgres", "postgresql"))
        if mode == "production" and (redis_url is None or database_url is None):
            raise SettingsError("CLICKMINT_REDIS_URL and CLICKMINT_DATABASE_URL are required in production mode")
        prefix = env.str("KEY_PREFIX", "cm")
        if not prefix.replace("-", "").replace("_", "").isalnum() or len(prefix) > 32:
            raise SettingsError(f"CLICKMINT_KEY_PREFIX={prefix!r} must be 1-32 letters, digits, '-' or '_'")
        return cls(
            mode=mode,
            redis_url=redis_url,
            database_url=database_url,
            data_dir=data_dir,
            secret_key=secret,
            host=env.str("HOST", DEFAULT_HOST),
            tracker_port=env.port("TRACKER_PORT", DEFAULT_TRACKER_PORT),
            portal_port=env.port("PORTAL_PORT", DEFAULT_PORTAL_PORT),
            tracker_workers=env.int("TRACKER_WORKERS", os.cpu_count() or 1, lo=1, hi=256),
            shards=env.int("SHARDS", DEFAULT_SHARDS, lo=1, hi=1024),
            ingest_processes=env.int("INGEST_PROCESSES", 1, lo=1, hi=env.int("SHARDS", DEFAULT_SHARDS, lo=1, hi=1024)),
            key_prefix=prefix,
            redis_cluster=env.choice("REDIS_CLUSTER", DEFAULT_CLUSTER_MODE, CLUSTER_MODES),
        )


def _development_secret(data_dir: Path) -> str:
    """A random secret kept in the data dir, so click ids stay valid across development restarts."""
    path = data_dir / "secret.key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value
