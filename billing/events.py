"""Stream entries to event rows: decode, validate against the contract, COPY, insert once per event id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
import orjson

TYPES = frozenset(("view", "click", "action", "purchase", "refund"))
COLUMNS = (
    "id",
    "ts",
    "type",
    "link_id",
    "offer_id",
    "partner_id",
    "click_id",
    "country",
    "bot_reason",
    "refusal",
    "is_unique",
    "sub1",
    "sub2",
    "sub3",
    "sub4",
    "sub5",
    "source",
    "ip_prefix",
    "order_id",
    "action",
    "amount_minor",
    "currency",
    "payload",
)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_STAGE_SQL = "CREATE TEMP TABLE ingest_stage (LIKE events INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
_COLUMN_LIST = ", ".join(COLUMNS)


class BadEvent(ValueError):
    """An entry that can never be stored: it goes to the dead-letter stream with this reason."""


def _text(event: dict[str, Any], key: str) -> str | None:
    value = event.get(key)
    return None if value is None or value == "" else str(value)


def decode(fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry as its event: the payload "d", with the uniqueness Redis decided ("u") merged in."""
    try:
        event = orjson.loads(fields.get(b"d", b""))
    except orjson.JSONDecodeError as exc:
        raise BadEvent(f"payload is not JSON: {exc}") from None
    if not isinstance(event, dict):
        raise BadEvent("payload is not an object")
    flag = fields.get(b"u")
    if flag is not None:
        event["unique"] = flag == b"1"
    return event


def to_row(fields: dict[bytes, bytes]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One stream entry as a row of `events` and as a dict; raises BadEvent when it breaks the contract."""
    event = decode(fields)
    raw = orjson.dumps(event) if b"u" in fields else fields.get(b"d", b"")
    kind, event_id, ts = event.get("type"), event.get("id"), event.get("ts")
    if kind not in TYPES:
        raise BadEvent(f"unknown event type {kind!r}")
    if not isinstance(event_id, str) or len(event_id) != 36:
        raise BadEvent("missing or malformed id")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise BadEvent("missing or malformed ts")
    unique = event.get("unique")
    amount = event.get("amount")
    row = (
        event_id,
        _EPOCH + dt.timedelta(milliseconds=ts),
        kind,
        event.get("link"),
        event.get("offer"),
        event.get("partner"),
        _text(event, "click_id"),
        event.get("country") or "",
        event.get("bot"),
        event.get("refusal"),
        unique if isinstance(unique, bool) else None,
        _text(event, "sub1"),
        _text(event, "sub2"),
        _text(event, "sub3"),
        _text(event, "sub4"),
        _text(event, "sub5"),
        _text(event, "source"),
        event.get("ip") or "",
        _text(event, "order_id"),
        _text(event, "action"),
        amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        _text(event, "currency"),
        raw.decode(),
    )
    return row, event


async def ensure_partitions(conn: asyncpg.Connection, days: Iterable[dt.date], known: set[dt.date]) -> None:
    """Create the day partitions a batch needs, outside the batch's transaction; cached per process."""
    for day in sorted(set(days) - known):
        await conn.execute("SELECT cm_ensure_event_partitions($1, 1)", day)
        known.add(day)


async def prepare(conn: asyncpg.Connection) -> None:
    """Per connection: the staging table COPY writes into (emptied at every commit)."""
    await conn.execute(_STAGE_SQL)


async def store(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]]) -> set[str]:
    """COPY the rows into a staging table and insert those not seen before; returns the new ids.

    The rows must hold each event id once (the caller drops repeats within a batch). Must run inside
    the caller's transaction: the returned ids are exactly the events this
    transaction made new, so everything derived from them (rollups, conversions) happens once.
    """
    await conn.copy_records_to_table("ingest_stage", records=rows, columns=COLUMNS)
    inserted = await conn.fetch(
        f"""INSERT INTO events ({_COLUMN_LIST})
            SELECT {_COLUMN_LIST} FROM ingest_stage
            ON CONFLICT DO NOTHING
            RETURNING id::text"""
    )
    return {record[0] for record in inserted}
