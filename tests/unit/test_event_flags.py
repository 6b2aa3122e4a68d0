"""The fields Redis adds beside a payload as it appends a click or view ("u": unique, "c": within its caps,
"b": a burst of its address) are merged into the stored event exactly as the tracker answered it."""

from __future__ import annotations

import orjson
import pytest

from billing import consumer, events
from kernel import events as contract

CLICK = {
    "id": "01900000-0000-7000-8000-000000000001",
    "ts": 0x01900000_0000,
    "type": "click",
    "link": 1,
    "partner": 2,
    "offer": 3,
    "click_id": "signed-id",
    "bot": None,
}


@pytest.mark.parametrize(
    ("unique", "within", "is_unique", "refusal", "click_id"),
    [
        (None, None, None, None, "signed-id"),
        (b"1", None, True, None, "signed-id"),
        (b"0", b"1", False, None, "signed-id"),
        (b"1", b"0", True, "over_cap", None),
    ],
)
def test_flags_become_columns_and_payload(
    unique: bytes | None, within: bytes | None, is_unique: bool | None, refusal: str | None, click_id: str | None
) -> None:
    data = orjson.dumps(CLICK)
    row, event = events.parse(data, unique, within)
    columns = dict(zip(events.COLUMNS, row, strict=True))
    assert (columns["is_unique"], columns["refusal"], columns["click_id"]) == (is_unique, refusal, click_id)
    stored = orjson.loads(columns["payload"])
    assert stored.get("over_cap", False) is (refusal == "over_cap") and stored.get("click_id") == click_id
    assert stored == event
    if unique is None and within is None:
        assert columns["payload"] == data.decode()  # nothing merged: the payload is stored as it came


@pytest.mark.parametrize(
    ("event", "unique", "burst", "bot", "is_unique"),
    [
        (CLICK, b"0", b"1", "burst", False),
        (CLICK, b"1", b"0", None, True),
        ({**CLICK, "type": "view"}, None, b"1", "burst", None),
        ({**CLICK, "type": "view"}, None, b"0", None, None),
        ({**CLICK, "bot": "prefetch", "unique": False}, None, b"1", "prefetch", False),  # a bot keeps its reason
    ],
)
def test_a_burst_verdict_makes_a_bot_never_unique(
    event: dict[str, object], unique: bytes | None, burst: bytes, bot: str | None, is_unique: bool | None
) -> None:
    data = orjson.dumps(event)
    row, stored = events.parse(data, unique, None, burst)
    columns = dict(zip(events.COLUMNS, row, strict=True))
    assert (columns["bot_reason"], columns["is_unique"]) == (bot, is_unique)
    assert orjson.loads(columns["payload"]) == stored and stored["bot"] == bot
    if unique is None and burst == b"0":
        assert columns["payload"] == data.decode()  # "b" 0 changes nothing: the payload is stored as it came


def test_decode_and_to_row_read_the_same_fields() -> None:
    fields = {b"d": orjson.dumps(CLICK), b"u": b"1", b"c": b"0", b"b": b"0"}
    assert contract.decode(fields) == events.to_row(fields)[1]
    assert contract.decode(fields)["refusal"] == "over_cap" and "click_id" not in contract.decode(fields)
    burst = {b"d": orjson.dumps(CLICK), b"u": b"0", b"b": b"1"}
    assert contract.decode(burst) == events.to_row(burst)[1] and contract.decode(burst)["bot"] == "burst"


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ([b"d", b"{}"], (b"{}", None, None, None)),  # a conversion, or a bot's view
        ([b"d", b"{}", b"b", b"1"], (b"{}", None, None, b"1")),  # a person's view
        ([b"d", b"{}", b"u", b"1", b"b", b"0"], (b"{}", b"1", None, b"0")),  # a click
        ([b"d", b"{}", b"u", b"0", b"c", b"0", b"b", b"0"], (b"{}", b"0", b"0", b"0")),  # a capped click
        ([b"d", b"{}", b"u", b"1"], (b"{}", b"1", None, None)),  # written before bursts were counted in Redis
    ],
)
def test_ingest_reads_every_field_redis_added(fields: list[bytes], expected: tuple[bytes | None, ...]) -> None:
    assert consumer._payload(fields) == expected
