"""The fields Redis adds beside a payload as it appends a click ("u": unique, "c": within its caps) are
merged into the stored event exactly as the tracker answered the click."""

from __future__ import annotations

import orjson
import pytest

from billing import events

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


def test_decode_and_to_row_read_the_same_fields() -> None:
    fields = {b"d": orjson.dumps(CLICK), b"u": b"1", b"c": b"0"}
    assert events.decode(fields) == events.to_row(fields)[1]
    assert events.decode(fields)["refusal"] == "over_cap" and "click_id" not in events.decode(fields)
