"""Billing's settings: the shared ones plus batch sizes, claim and dead-letter rules of ingest."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from kernel.env import Env, SettingsError
from kernel.settings import Settings

GROUP = "billing"
DEFAULT_RETENTION_DAYS = 400
DEFAULT_METRICS_PORT = 8002
DEFAULT_LINGER_MS = 50
DEFAULT_STALL_S = 60
METRICS_HOST = "127.0.0.1"  # the billing metrics are for a local scraper only


@dataclass(frozen=True)
class BillingSettings:
    core: Settings
    consumer: str  # this process's name in the consumer group; stable across restarts so it re-reads its own pending
    batch: int  # entries per XREADGROUP
    block_ms: int  # how long one XREADGROUP waits for new entries
    claim_idle_ms: int  # entries idle longer than this in a dead consumer are claimed
    max_deliveries: int  # an entry delivered this often without success goes to the dead-letter stream
    retention_s: int  # acknowledged stream entries older than this are trimmed (never a pending one)
    crash_after_commit: int  # fault injection for the guarantee tests: os._exit after the Nth commit, before XACK
    retention_days: int = DEFAULT_RETENTION_DAYS  # raw event days older than this are dropped once final; 0: never
    metrics_port: int = DEFAULT_METRICS_PORT  # ingest's Prometheus text endpoint on metrics_host; 0: none
    metrics_host: str = METRICS_HOST  # CLICKMINT_METRICS_HOST: the admin address of every part's metrics
    # A read that brings fewer than batch/10 entries waits this long for more before committing: evenly
    # spread traffic would otherwise cost a transaction per event. 0: commit at once.
    linger_ms: int = DEFAULT_LINGER_MS
    # This process is part `part` of `parts` ingest processes and consumes the shards s with
    # s % parts == part - 1 (CLICKMINT_INGEST_PART, "1/2"); `clickmint up` starts CLICKMINT_INGEST_PROCESSES.
    part: int = 1
    parts: int = 1
    # A MaxMind-format ASN database (e.g. GeoLite2-ASN.mmdb) for the datacenter fraud rule; None: the rule is idle.
    asn_db: str | None = None
    # A shard with entries not yet stored whose oldest one has not changed for this long is reported
    # stalled (clickmint_ingest_shard_stalled 1), seen from one metrics scrape to the next.
    stall_s: int = DEFAULT_STALL_S

    def my_shards(self) -> list[int]:
        """The stream shards this process consumes."""
        return [s for s in range(self.core.shards) if s % self.parts == self.part - 1]

    @classmethod
    def from_env(cls, env: Env | None = None, core: Settings | None = None) -> BillingSettings:
        env = env or Env()
        core = core or Settings.from_env(env)
        return cls(
            core=core,
            consumer=env.str("CONSUMER_NAME", socket.gethostname()),
            batch=env.int("INGEST_BATCH", 5000, lo=1, hi=100_000),
            block_ms=env.int("INGEST_BLOCK_MS", 200, lo=1, hi=60_000),
            claim_idle_ms=env.int("CLAIM_IDLE_MS", 30_000, lo=100, hi=86_400_000),
            max_deliveries=env.int("MAX_DELIVERIES", 5, lo=1, hi=1000),
            retention_s=env.int("STREAM_RETENTION_S", 3600, lo=0, hi=30 * 86400),
            crash_after_commit=env.int("FAULT_CRASH_AFTER_COMMIT", 0, lo=0),
            retention_days=env.int("RETENTION_DAYS", DEFAULT_RETENTION_DAYS, lo=0, hi=36_500),
            metrics_port=env.int("BILLING_METRICS_PORT", DEFAULT_METRICS_PORT, lo=0, hi=65_535),
            metrics_host=env.str("METRICS_HOST", METRICS_HOST),
            linger_ms=env.int("INGEST_LINGER_MS", DEFAULT_LINGER_MS, lo=0, hi=5_000),
            asn_db=env.raw("ASN_DB") or None,
            stall_s=env.int("INGEST_STALL_S", DEFAULT_STALL_S, lo=1, hi=86_400),
            **_part(env, core.shards),
        )


def _part(env: Env, shards: int) -> dict[str, int]:
    """CLICKMINT_INGEST_PART "i/n": this is process i of n (1 <= i <= n <= shards)."""
    value = env.raw("INGEST_PART") or "1/1"
    try:
        part, parts = (int(x, 10) for x in value.split("/"))
    except ValueError:
        raise SettingsError(f"CLICKMINT_INGEST_PART={value!r} is not i/n (e.g. 1/2)") from None
    if not 1 <= part <= parts <= shards:
        raise SettingsError(f"CLICKMINT_INGEST_PART={value!r}: need 1 <= i <= n <= the number of shards ({shards})")
    return {"part": part, "parts": parts}
