"""Retention: drop raw event day-partitions once they are old and final; everything derived is kept.

A day of raw events (`events_YYYYMMDD`) is dropped only when all of these hold, each checked anew
on every run, under settle's lock so no settle reads the day while it goes:

- it ended more than `CLICKMINT_RETENTION_DAYS` ago (0 turns retention off);
- no click of it can still bring a conversion (the longest attribution window of any offer) and
  settle's click look-back (`ledger.CLICK_LOOKBACK`, cpc/cpv lines come from raw events) is past it;
- its month is final: no statement of that month is open, for any partner, and settle has closed
  that month or a later one (before the first close nothing is final);
- no ledger line of that day is still waiting for a statement;
- ingest has nothing pending or undelivered older than the day's end, in any shard.

Rollups, conversions, commissions, refunds, customers, ledger lines and statements are never touched.
The default partition is never dropped. A drop waits at most `LOCK_TIMEOUT` for ingest's transactions;
a day it could not take is tried again on the next run.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass, field

import asyncpg
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from billing import periodic
from billing.ledger import CLICK_LOOKBACK
from billing.metrics import record_run
from billing.settings import GROUP, BillingSettings
from billing.settle import SETTLE_LOCK
from kernel.keys import stream_key
from kernel.redis import pyclient

log = logging.getLogger("clickmint.billing.retention")
PARTITION = re.compile(r"^events_(\d{8})$")
LOCK_TIMEOUT = "5s"
FIRST_RUN_DELAY_S = 60.0
INTERVAL_S = 86_400.0


@dataclass(frozen=True)
class Decision:
    partition: str
    day: dt.date
    reasons: tuple[str, ...]  # why it is kept; empty: it is (or would be, in a dry run) dropped

    @property
    def drop(self) -> bool:
        return not self.reasons


@dataclass
class RetentionReport:
    dry_run: bool
    retention_days: int
    decisions: list[Decision] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """One line per partition, oldest first, then a summary."""
        verb = "would drop" if self.dry_run else "dropped"
        out = []
        for decision in self.decisions:
            if decision.drop:
                out.append(f"{verb} {decision.partition}: older than {self.retention_days} days and final")
            else:
                out.append(f"keep {decision.partition}: {'; '.join(decision.reasons)}")
        kept = sum(1 for d in self.decisions if not d.drop)
        dropping = len(self.decisions) - kept
        out.append(
            f"retention ({self.retention_days} days){' dry run' if self.dry_run else ''}: "
            f"{dropping} partition(s) {verb}, {kept} kept, in {self.seconds:.2f}s"
        )
        return out


@dataclass(frozen=True)
class _Facts:
    """What the decisions depend on, read once per run."""

    now: dt.datetime
    max_window: dt.timedelta
    open_periods: dict[dt.date, int]  # period start -> open statements
    open_ranges: list[tuple[dt.date, dt.date]]
    latest_closed: dt.date | None  # the latest period with a closed or paid statement
    unassigned: dict[dt.date, int]  # day -> ledger lines not on a statement yet
    ingest_bound: dt.datetime | None  # the oldest unfinished stream entry; None: nothing unfinished
    ingest_note: str  # which shard holds it, or why ingest could not be asked


async def _ingest_bound(
    redis: aioredis.Redis | RedisCluster | None, prefix: str, shards: int
) -> tuple[dt.datetime | None, str, bool]:
    """The time of the oldest pending or undelivered entry over all shards; (bound, where, known)."""
    if redis is None:
        return None, "no Redis configured", False
    oldest: tuple[int, str] | None = None
    try:
        for shard in range(shards):
            key = stream_key(prefix, shard)
            if not await redis.exists(key):
                continue
            groups = await redis.xinfo_groups(key)
            group = next((g for g in groups if g["name"] in (GROUP, GROUP.encode())), None)
            candidates: list[int] = []
            if group is None:  # nobody has read this shard: every entry in it is undelivered
                first = await redis.xrange(key, count=1)
                first_id = first[0][0] if first else None  # redis-py types an entry's id as optional
                if first_id is not None:
                    candidates.append(_ms(first_id))
            else:
                pending = await redis.xpending(key, GROUP)
                if pending["pending"]:
                    candidates.append(_ms(pending["min"]))
                lag = group.get("lag")
                if lag is None or lag > 0:  # undelivered entries come after the last delivered one
                    candidates.append(_ms(group["last-delivered-id"]))
            for ms in candidates:
                if oldest is None or ms < oldest[0]:
                    oldest = (ms, f"shard {shard}")
    except (OSError, RedisError) as exc:
        return None, f"cannot ask Redis whether ingest is behind ({exc})", False
    if oldest is None:
        return None, "", True
    return dt.datetime.fromtimestamp(oldest[0] / 1000, dt.UTC), oldest[1], True


def _ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-")[0])


async def _facts(conn: asyncpg.Connection, now: dt.datetime, bound: tuple[dt.datetime | None, str]) -> _Facts:
    window_s = await conn.fetchval("SELECT coalesce(max(attribution_window_s), 0) FROM offers")
    open_rows = await conn.fetch(
        "SELECT period_start, period_end, count(*) AS n FROM statements WHERE status = 'open' GROUP BY 1, 2"
    )
    latest_closed = await conn.fetchval("SELECT max(period_start) FROM statements WHERE status IN ('closed', 'paid')")
    unassigned = await conn.fetch(
        """SELECT (occurred_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n FROM ledger_lines
           WHERE statement_id IS NULL GROUP BY 1"""
    )
    return _Facts(
        now=now,
        max_window=dt.timedelta(seconds=int(window_s)),
        open_periods={r["period_start"]: int(r["n"]) for r in open_rows},
        open_ranges=[(r["period_start"], r["period_end"]) for r in open_rows],
        latest_closed=latest_closed,
        unassigned={r["day"]: int(r["n"]) for r in unassigned},
        ingest_bound=bound[0],
        ingest_note=bound[1],
    )


def decide(partition: str, day: dt.date, retention_days: int, facts: _Facts) -> Decision:
    """Whether one day's partition may go, and if not every reason why (pure: the facts are read before)."""
    end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
    month = day.replace(day=1)
    reasons: list[str] = []
    if retention_days == 0:
        reasons.append("retention is off (CLICKMINT_RETENTION_DAYS=0)")
    elif end > facts.now - dt.timedelta(days=retention_days):
        reasons.append(f"younger than {retention_days} days")
    if end > facts.now - facts.max_window:
        reasons.append(f"its clicks can still convert (attribution window {facts.max_window.days} days)")
    if end > facts.now - CLICK_LOOKBACK:
        reasons.append(f"settle may still pay its clicks and views ({CLICK_LOOKBACK.days}-day look-back)")
    open_here = sum(facts.open_periods[start] for start, stop in facts.open_ranges if start <= day < stop)
    if open_here:
        reasons.append(f"{open_here} statement(s) of {month:%Y-%m} still open")
    if facts.latest_closed is None or facts.latest_closed < month:
        reasons.append(f"settle has not closed {month:%Y-%m} yet")
    if facts.unassigned.get(day):
        reasons.append(f"{facts.unassigned[day]} ledger line(s) of that day not on a statement yet")
    if facts.ingest_bound is not None and facts.ingest_bound < end:
        reasons.append(f"ingest has entries pending since {facts.ingest_bound:%Y-%m-%d %H:%M:%S} ({facts.ingest_note})")
    return Decision(partition, day, tuple(reasons))


async def partitions(conn: asyncpg.Connection) -> list[tuple[str, dt.date]]:
    """The day partitions of `events`, oldest first (the default partition is not one)."""
    rows = await conn.fetch(
        """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'events'::regclass"""
    )
    found = []
    for row in rows:
        match = PARTITION.match(row["relname"])
        if match:
            found.append((row["relname"], dt.datetime.strptime(match.group(1), "%Y%m%d").date()))
    return sorted(found, key=lambda item: item[1])


async def apply_retention(
    conn: asyncpg.Connection,
    settings: BillingSettings,
    *,
    dry_run: bool = False,
    now: dt.datetime | None = None,
    redis: aioredis.Redis | RedisCluster | None = None,
) -> RetentionReport:
    """Decide for every day partition, drop the final ones (unless `dry_run`), record the run."""
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    report = RetentionReport(dry_run=dry_run, retention_days=settings.retention_days)
    own_redis = redis is None and settings.core.redis_url is not None
    try:
        if own_redis:
            assert settings.core.redis_url is not None
            redis = await pyclient.connect(
                settings.core.redis_url, settings.core.redis_cluster, socket_timeout=5, socket_connect_timeout=5
            )
        bound, note, known = await _ingest_bound(redis, settings.core.key_prefix, settings.core.shards)
    except (OSError, RedisError) as exc:  # no node answers: whether ingest is behind is unknown
        bound, note, known = None, f"cannot ask Redis whether ingest is behind ({exc})", False
    finally:
        if own_redis and redis is not None:
            await redis.aclose()
    async with conn.transaction():
        # Settle reads raw events (cpc, cpv) and fills statements: it must not run while days go.
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SETTLE_LOCK)
        facts = await _facts(conn, now, (bound, note))
        for name, day in await partitions(conn):
            decision = decide(name, day, settings.retention_days, facts)
            if not known and decision.drop:
                decision = Decision(name, day, (note,))
            if decision.drop and not dry_run:
                try:
                    async with conn.transaction():
                        await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                        await conn.execute(f'DROP TABLE "{name}"')
                    report.dropped.append(name)
                except asyncpg.LockNotAvailableError:
                    decision = Decision(name, day, (f"busy: not locked within {LOCK_TIMEOUT}, next run",))
            report.decisions.append(decision)
        report.seconds = time.perf_counter() - started
        if not dry_run:
            await record_run(conn, "retention", now, report.seconds, {"dropped": report.dropped, "kept": _kept(report)})
    for name in report.dropped:
        log.info("retention: dropped %s", name)
    return report


def _kept(report: RetentionReport) -> int:
    return sum(1 for d in report.decisions if not d.drop)


async def run_daily(settings: BillingSettings, stop: asyncio.Event) -> None:
    """Run retention a minute after start, then once a day, until `stop`; a failed run is retried next day."""
    assert settings.core.database_url is not None

    async def run(conn: asyncpg.Connection) -> None:
        report = await apply_retention(conn, settings)
        log.info("%s", report.lines()[-1])

    await periodic.every(settings.core.database_url, stop, FIRST_RUN_DELAY_S, INTERVAL_S, run, log, "retention")
