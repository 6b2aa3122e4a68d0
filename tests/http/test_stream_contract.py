"""Every kind of event the tracker writes follows the stream contract (schemas/events): the readers in
tracker_client check each entry; here every type and every extra field Redis adds is written at least once."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import click_id_of
from tests.http.tracker_client import running, signed_headers

FALLBACK = "https://fallback.example.org/"


async def test_every_type_of_event_follows_the_contract(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, caps={"clicks": {"daily": 1}}, fallback_url=FALLBACK)
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with running(settings) as t:

        async def postback(**fields: Any) -> None:
            body = orjson.dumps({"offer_id": prog.offer_id, "click_id": click_id, **fields})
            headers = {"content-type": "application/json", **signed_headers(secret, body)}
            response = await t.http.post("/postback", content=body, headers=headers)
            assert response.status_code == 200, response.text

        first = await t.http.get(f"/c/{prog.code}?sub1=a&source=mail")
        click_id = click_id_of(first)
        over = await t.client(ip="198.51.100.7").get(f"/c/{prog.code}")  # another visitor, past the daily cap
        assert over.headers["location"] == FALLBACK
        await t.http.get(f"/v/{prog.code}", headers={"user-agent": "Slackbot-LinkExpanding 1.0"})
        await t.http.get(f"/a/{prog.offer_id}?action=signup")  # by the click's cookie
        items = [{"sku": "A-1", "qty": 2, "price": "10.00"}, {"sku": "B-2", "qty": 1, "price": "9.99"}]
        await postback(type="purchase", order_id="o-1", amount="29.99", currency="EUR", items=items, customer_id="c-7")
        await postback(type="refund", order_id="o-1", amount="9.99", currency="EUR")
        await postback(type="refund", order_id="o-1")
        events = await t.events()  # each entry checked against the schemas on the way
    assert [e["type"] for e in events] == ["click", "click", "view", "action", "purchase", "refund", "refund"]
    assert [e.get("over_cap", False) for e in events[:2]] == [False, True]
    assert "click_id" not in events[1] and events[1]["refusal"] == "over_cap"
    assert events[4]["items"] == [{"sku": "A-1", "qty": 2, "price": 1000}, {"sku": "B-2", "qty": 1, "price": 999}]
