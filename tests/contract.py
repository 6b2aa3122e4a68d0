"""The stream contract (schemas/events/*.schema.json) as a check tests run on every entry they read back."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

import jsonschema
import orjson

from schemas import EVENTS_DIR


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    schema = json.loads((EVENTS_DIR / f"{name}.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def problems(name: str, instance: Any) -> list[str]:
    """What breaks the schema `name` (event or entry), one line each; empty when the instance conforms."""
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in validator(name).iter_errors(instance)
    ]


def check_entry(fields: Mapping[bytes, bytes]) -> None:
    """Assert that one stream entry, as XRANGE returns it, and its payload follow the contract."""
    entry = {key.decode(): value.decode() for key, value in fields.items()}
    assert not problems("entry", entry), (problems("entry", entry), entry)
    event = orjson.loads(fields[b"d"])
    assert not problems("event", event), (problems("event", event), event)
