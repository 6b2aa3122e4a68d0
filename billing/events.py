"""Stream entries to event rows: decode (kernel/events.py), check the contract, COPY, insert once per event id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg
import orjson

from kernel.events import TYPES, BadEvent, event_time, load

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
_EXACT_MS = 2**32 * 1000
_fromtimestamp = dt.datetime.fromtimestamp


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else value if type(value) is str else str(value)


def to_row(fields: dict[bytes, bytes]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """One stream entry as a row of `events` and as a dict; raises BadEvent when it breaks the contract."""
    return parse(fields.get(b"d", b""), fields.get(b"u"), fields.get(b"c"), fields.get(b"b"))


def parse(
    data: bytes, flag: bytes | None, within: bytes | None = None, burst: bytes | None = None
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """A payload ("d") with the flags Redis decided as it appended the entry, as a row of `events` and as a dict.

    `flag`: "u", the click's uniqueness; `within`: "c", the click's cap verdict (b"0": over cap); `burst`:
    "b", whether the hit was a burst of its address (b"1": stored as bot "burst", never unique); None when
    the entry has no such field. The payload stored is the one the flags were merged into.

    The hot path of ingest (a few µs an event): one `get` per column, no per-field helper when the
    value is already what the column takes. Raises BadEvent when the event breaks the contract.
    """
    event = load(data, flag, within, burst)
    get = event.get
    kind, event_id, ts = get("type"), get("id"), get("ts")
    if kind not in TYPES:
        raise BadEvent(f"unknown event type {kind!r}")
    if type(event_id) is not str or len(event_id) != 36:
        raise BadEvent("missing or malformed id")
    if type(ts) is not int:
        raise BadEvent("missing or malformed ts")
    dated = event_time(event_id, ts)
    if dated != ts:  # the tracker's clock stepped back: the stored payload keeps what it said
        event["ts"], event["ts_tracker"], ts = dated, ts, dated
    unique, amount = get("unique"), get("amount")
    raw = data if flag is None and within is None and burst != b"1" else orjson.dumps(event)  # "b" 0 changes nothing
    row = (
        event_id,
        _at(ts),
        kind,
        get("link"),
        get("offer"),
        get("partner"),
        _text(get("click_id")),
        get("country") or "",
        get("bot"),
        get("refusal"),
        unique if type(unique) is bool else None,
        _text(get("sub1")),
        _text(get("sub2")),
        _text(get("sub3")),
        _text(get("sub4")),
        _text(get("sub5")),
        _text(get("source")),
        get("ip") or "",
        _text(get("order_id")),
        _text(get("action")),
        amount if type(amount) is int else None,
        _text(get("currency")),
        raw.decode(),
    )
    return row, event


def _at(ts: int) -> dt.datetime:
    """A ts in ms as a datetime: the float division is exact to the microsecond up to 2^32 s (year 2106)."""
    if 0 <= ts < _EXACT_MS:
        return _fromtimestamp(ts / 1000, dt.UTC)
    return _EPOCH + dt.timedelta(milliseconds=ts)


async def ensure_partitions(conn: asyncpg.Connection, days: Iterable[dt.date], known: set[dt.date]) -> None:
    """Create the day partitions a batch needs, outside the batch's transaction; cached per process."""
    for day in sorted(set(days) - known):
        await conn.execute("SELECT cm_ensure_event_partitions($1, 1)", day)
        known.add(day)


async def prepare(conn: asyncpg.Connection) -> None:
    """Per connection: the staging table COPY writes into (emptied at every commit)."""
    await conn.execute(_STAGE_SQL)


async def copy(
    conn: asyncpg.Connection, table: str, records: Sequence[tuple[Any, ...]], columns: Sequence[str] | None = None
) -> None:
    """COPY records into a table; a value of the wrong type fails the batch as a BadEvent.

    The binary COPY raises TypeError or OverflowError where a parameter would have raised DataError
    (a string where a bigint goes, a number past 64 bits): the batch is then retried entry by entry and
    the culprit goes to the dead-letter stream, instead of the whole batch being retried for ever.
    """
    try:
        await conn.copy_records_to_table(table, records=records, columns=columns)
    except (TypeError, OverflowError) as exc:
        raise BadEvent(f"a value does not fit its column: {exc}") from None


class AlreadyStored(Exception):
    """A COPY straight into `events` met an event id stored before; its transaction must be rolled back."""


async def store(conn: asyncpg.Connection, rows: Sequence[tuple[Any, ...]], fresh: bool = False) -> set[str] | None:
    """Insert the rows not seen before; returns the new ids, or None when every row was new.

    The rows must hold each event id once (the caller drops repeats within a batch). Must run inside
    the caller's transaction: the returned ids are exactly the events this transaction made new, so
    everything derived from them (rollups, conversions) happens once. `fresh` (entries delivered for
    the first time, nearly always new events): COPY straight into `events`, the cheapest path, and
    raise AlreadyStored when the primary key refuses one, so the caller rolls back and goes again
    without `fresh`. Otherwise COPY into a staging table and insert what is new from there.
    """
    if fresh:
        try:
            await copy(conn, "events", rows, COLUMNS)
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyStored(str(exc)) from exc
        return None
    await copy(conn, "ingest_stage", rows, COLUMNS)
    inserted = await conn.fetch(
        f"""INSERT INTO events ({_COLUMN_LIST})
            SELECT {_COLUMN_LIST} FROM ingest_stage
            ON CONFLICT DO NOTHING
            RETURNING id::text"""
    )
    return {record[0] for record in inserted}
