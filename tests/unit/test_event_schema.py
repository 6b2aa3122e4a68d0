"""The stream contract (schemas/events) accepts what the tracker writes and refuses what breaks it.

Every entry the HTTP tests read back is checked against it (tests/http/tracker_client.py); this table
shows the check can fail, case by case."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract import problems

BASE = {"id": "019aa000-0000-7000-8000-000000000001", "ts": 1764201600000, "country": "DE", "ip": "203.0.113.0"}
VIEW = {**BASE, "type": "view", "link": 1, "partner": 2, "offer": 3, "ua": "Mozilla/5.0", "bot": None}
SUBS = {"sub1": "a", "sub2": "", "sub3": "", "sub4": "", "sub5": "", "source": ""}
CLICK = {**VIEW, "type": "click", **SUBS, "click_id": "AQAAAAE", "unique": False}
CONVERSION = {
    **BASE,
    "link": 1,
    "partner": 2,
    "offer": 3,
    "click_id": "AQAAAAE",
    "via": "postback",
    "auth": "signature",
}
ACTION = {**CONVERSION, "type": "action", "action": "signup"}
PURCHASE = {
    **CONVERSION,
    "type": "purchase",
    "order_id": "o-1",
    "amount": 12999,
    "currency": "EUR",
    "items": [{"sku": "A1", "qty": 2, "price": 6499}],
    "customer": "c-9",
}
REFUND = {**CONVERSION, "type": "refund", "order_id": "o-1"}
REFUSED_PIXEL = {
    **BASE,
    "type": "action",
    "offer": 3,
    "click_id": "nope",
    "refusal": "click_id_malformed",
    "via": "pixel",
    "auth": "none",
}
OVER_CAP_CLICK = {k: v for k, v in CLICK.items() if k != "click_id"} | {"over_cap": True, "refusal": "over_cap"}


@pytest.mark.parametrize(
    "event",
    [
        VIEW,
        CLICK,
        ACTION,
        PURCHASE,
        REFUND,
        REFUSED_PIXEL,
        OVER_CAP_CLICK,
        {**VIEW, "bot": "head", "country": ""},
        {**ACTION, "via": "tune", "auth": "token"},
        {**ACTION, "via": "cookie", "auth": "none"},
        {k: v for k, v in PURCHASE.items() if k != "auth"},  # written before the field existed
    ],
)
def test_what_the_tracker_writes_conforms(event: dict[str, Any]) -> None:
    assert problems("event", event) == []


def _without(event: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != name}


@pytest.mark.parametrize(
    ("event", "where"),
    [
        pytest.param({**CLICK, "surprise": 1}, "(root)", id="unknown_field"),
        pytest.param({**PURCHASE, "amount": 129.99}, "amount", id="float_amount"),
        pytest.param({**PURCHASE, "amount": -1}, "amount", id="negative_amount"),
        pytest.param({**PURCHASE, "currency": "eur"}, "currency", id="lower_case_currency"),
        pytest.param(_without(PURCHASE, "amount"), "(root)", id="purchase_without_amount"),
        pytest.param(_without(REFUND, "order_id"), "(root)", id="refund_without_order"),
        pytest.param({**VIEW, "click_id": "x"}, "click_id", id="view_with_click_id"),
        pytest.param(_without(CLICK, "sub3"), "(root)", id="click_without_a_sub"),
        pytest.param({**CLICK, "sub1": "x" * 256}, "sub1", id="oversized_sub"),
        pytest.param({**OVER_CAP_CLICK, "click_id": "AQAAAAE"}, "click_id", id="over_cap_click_keeps_its_id"),
        pytest.param({**CLICK, "id": "6f9619ff-8b86-4d11-b42d-00c04fc964ff"}, "id", id="not_a_v7_id"),
        pytest.param({**ACTION, "ua": "Mozilla/5.0"}, "ua", id="conversion_with_user_agent"),
        pytest.param(_without(ACTION, "link"), "(root)", id="accepted_conversion_without_link"),
        pytest.param({**PURCHASE, "items": [{"sku": "A1", "qty": 0, "price": 1}]}, "items/0/qty", id="zero_quantity"),
        pytest.param({**BASE, "type": "impression", "offer": 3}, "type", id="unknown_type"),
        pytest.param({**ACTION, "auth": "password"}, "auth", id="unknown_auth"),
        pytest.param({**ACTION, "via": "pixel", "auth": "signature"}, "auth", id="pixel_claiming_a_signature"),
        pytest.param({**CLICK, "auth": "none"}, "auth", id="click_with_auth"),
    ],
)
def test_what_breaks_the_contract_is_named(event: dict[str, Any], where: str) -> None:
    found = problems("event", event)
    assert any(line.startswith(f"{where}:") for line in found), found


@pytest.mark.parametrize(
    ("entry", "ok"),
    [
        ({"d": "{}"}, True),
        ({"d": "{}", "u": "1"}, True),
        ({"d": "{}", "u": "0", "c": "0"}, True),
        ({"d": "{}", "b": "1"}, True),  # a view: its address's burst verdict
        ({"d": "{}", "u": "0", "b": "1"}, True),
        ({"d": "{}", "u": "1", "c": "1", "b": "0"}, True),
        ({"d": "{}", "b": "2"}, False),
        ({"d": "{}", "b": "true"}, False),
        ({"d": "{}", "c": "1"}, False),  # a cap verdict comes only with the script that also decides uniqueness
        ({"d": "{}", "u": "yes"}, False),
        ({"u": "1"}, False),
        ({"d": "{}", "x": "1"}, False),
    ],
)
def test_entry_fields(entry: dict[str, str], ok: bool) -> None:
    assert (problems("entry", entry) == []) is ok
