"""The typed event record (kernel/events.py) and its JSON Schema (schemas/events) name the same fields."""

from __future__ import annotations

import json
import typing

from kernel.events import Event, Item
from schemas import EVENTS_DIR
from tests.contract import problems

SCHEMA = json.loads((EVENTS_DIR / "event.schema.json").read_text())


def test_the_record_has_every_field_of_the_schema_and_no_other() -> None:
    assert set(typing.get_type_hints(Event)) == set(SCHEMA["properties"])


def test_the_required_fields_of_every_event_are_in_the_record() -> None:
    assert set(SCHEMA["required"]) <= set(typing.get_type_hints(Event))


def test_an_item_has_the_schema_item_fields() -> None:
    item = SCHEMA["properties"]["items"]["items"]
    assert set(typing.get_type_hints(Item)) == set(item["properties"])
    assert Item.__required_keys__ == set(item["required"])


def test_the_type_names_are_the_schema_enum() -> None:
    kind = typing.get_type_hints(Event)["type"]
    assert set(typing.get_args(kind)) == set(SCHEMA["properties"]["type"]["enum"])


def test_a_record_built_as_typed_passes_the_schema() -> None:
    click: Event = {
        "id": "019aa000-0000-7000-8000-000000000001",
        "ts": 1764201600000,
        "type": "click",
        "link": 1,
        "partner": 2,
        "offer": 3,
        "country": "DE",
        "ip": "203.0.113.0",
        "ua": "Mozilla/5.0",
        "bot": None,
        "sub1": "a",
        "sub2": "",
        "sub3": "",
        "sub4": "",
        "sub5": "",
        "source": "",
        "click_id": "AQAAAAE",
    }
    assert problems("event", click) == []
    assert problems("event", {**click, "amount": 1.5}) != []
