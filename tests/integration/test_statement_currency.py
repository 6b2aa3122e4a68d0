"""Statements in the partner's currency: lines converted at the operator's rate in force at settlement,
locked on the line, rounded once; a line without a rate stays in its own currency's statement."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import asyncpg
import pytest

from billing import statements
from billing.settle import settle
from kernel.money import convert
from tests.factories import programme


async def _line(db: asyncpg.Connection, prog, source: str, amount: int, at: dt.datetime) -> None:
    await db.execute(
        """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor, basis,
                                     occurred_at)
           VALUES ($1, 'cps', $2, $3, $4, 'USD', $5, '10% of a sale', $6)""",
        source,
        prog.merchant_id,
        prog.partner_id,
        prog.offer_id,
        amount,
        at,
    )


async def test_lines_are_converted_at_the_rate_locked_at_settlement(db: asyncpg.Connection) -> None:
    prog = await programme(db, currency="USD")
    await db.execute("UPDATE merchants SET statement_currency = 'partner', rounding = 'half_even'")
    await db.execute("UPDATE partners SET currency = 'EUR'")
    now = dt.datetime.now(dt.UTC)
    period = f"{now:%Y-%m}"
    start = dt.datetime.combine(statements.month_bounds(period)[0], dt.time(1), dt.UTC)
    await db.execute(
        """INSERT INTO currency_rates (merchant_id, base, quote, rate, valid_from)
           VALUES ($1, 'USD', 'EUR', 0.5, $2::timestamptz - interval '10 days'),
                  ($1, 'USD', 'EUR', 0.9215, $2::timestamptz - interval '1 day'),
                  ($1, 'USD', 'EUR', 5, $2::timestamptz + interval '1 day')""",
        prog.merchant_id,
        now,
    )
    amounts = [1300, 1, 5, 999_999]
    for i, amount in enumerate(amounts):
        await _line(db, prog, f"e{i}", amount, start)
    report = await settle(db, period, now=now, close=False)
    assert (report.statements.converted, report.statements.unconverted) == (4, 0)
    (statement,) = await db.fetch("SELECT id, currency FROM statements")
    assert statement["currency"] == "EUR"
    expected = [convert(a, "USD", "EUR", Decimal("0.9215")) for a in amounts]
    lines = await db.fetch(
        "SELECT amount_minor, fx_amount_minor, fx_rate, fx_currency FROM ledger_lines ORDER BY source"
    )
    assert [line["fx_amount_minor"] for line in lines] == expected == [1198, 1, 5, 921_499]
    assert {(line["fx_rate"], line["fx_currency"]) for line in lines} == {(Decimal("0.9215000000"), "EUR")}
    assert [line["amount_minor"] for line in lines] == amounts  # the original stays as it was

    closing = dt.datetime.combine(statements.month_bounds(period)[1], dt.time(1), dt.UTC)
    await db.execute(
        "INSERT INTO currency_rates (merchant_id, base, quote, rate) VALUES ($1, 'USD', 'EUR', 2)", prog.merchant_id
    )
    await settle(db, period, now=closing)
    closed = await db.fetchrow("SELECT status, total_minor FROM statements WHERE id = $1", statement["id"])
    assert (closed["status"], closed["total_minor"]) == ("closed", sum(expected))
    csv = (await statements.export(db, statement["id"], "csv")).decode()
    assert "(13.00 USD at 0.9215)" in csv and "11.98" in csv
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("UPDATE ledger_lines SET fx_rate = 1 WHERE source = 'e0'")


async def test_without_a_rate_the_line_stays_in_its_own_currency(db: asyncpg.Connection) -> None:
    prog = await programme(db, currency="USD")
    await db.execute("UPDATE merchants SET statement_currency = 'partner'")
    await db.execute("UPDATE partners SET currency = 'JPY'")
    now = dt.datetime.now(dt.UTC)
    await _line(db, prog, "x1", 250, now - dt.timedelta(minutes=1))
    report = await settle(db, f"{now:%Y-%m}", now=now, close=False)
    assert (report.statements.converted, report.statements.unconverted) == (0, 1)
    assert "no rate" in report.summary()
    assert await db.fetchval("SELECT currency FROM statements") == "USD"
    assert await db.fetchval("SELECT fx_rate FROM ledger_lines") is None


async def test_merchants_settling_per_currency_are_untouched(db: asyncpg.Connection) -> None:
    prog = await programme(db, currency="USD")
    await db.execute("UPDATE partners SET currency = 'EUR'")
    await db.execute(
        "INSERT INTO currency_rates (merchant_id, base, quote, rate) VALUES ($1, 'USD', 'EUR', 0.9)", prog.merchant_id
    )
    now = dt.datetime.now(dt.UTC)
    await _line(db, prog, "y1", 250, now - dt.timedelta(minutes=1))
    await settle(db, f"{now:%Y-%m}", now=now, close=False)
    assert await db.fetchval("SELECT currency FROM statements") == "USD"
