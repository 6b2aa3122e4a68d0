"""Settle end to end: approval after the hold, ledger lines, statements, closing, immutability, reversals."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing import ledger, statements
from billing.exports import sha256_hex
from billing.settle import settle
from kernel.settings import Settings
from tests.factories import programme
from tests.helpers import click_id_of, drain, postback, tracker_client


async def _a_close_waits_for_lines_being_written(
    settings: Settings, db: asyncpg.Connection, statement_id: int, offer_id: int
) -> None:
    """Lines being written into a statement hold it: a close in another transaction waits for them
    (and then counts them), so no line can slip into a statement after its total is fixed."""
    writer = await asyncpg.connect(settings.database_url)
    try:
        async with writer.transaction():
            await writer.execute(
                """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor,
                                            basis, occurred_at, statement_id)
                   SELECT 'in-flight', 'cps', merchant_id, partner_id, $2, currency, 0, 'x', now(), id
                   FROM statements WHERE id = $1""",
                statement_id,
                offer_id,
            )
            with pytest.raises(asyncpg.LockNotAvailableError):
                async with db.transaction():
                    await db.execute("SET LOCAL lock_timeout = '300ms'")
                    await db.execute("UPDATE statements SET status = 'closed' WHERE id = $1", statement_id)
            raise _RollBack  # leave the statement as it was
    except _RollBack:
        pass
    finally:
        await writer.close()


class _RollBack(Exception):
    pass


async def test_a_month_settled_closed_and_a_late_refund_reversed(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10", "cpa": {"signup": 250}})
    await db.execute("UPDATE offers SET hold_days = 0")
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        cid = click_id_of(await client.get(f"/c/{prog.code}", headers={"user-agent": "Mozilla/5.0"}))
        base = {"offer_id": prog.offer_id, "click_id": cid}
        await postback(client, secret, {**base, "action": "signup"})
        await postback(client, secret, {**base, "order_id": "A1", "amount": "129.99"})
    await drain(settings, 3, db)

    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    period = f"{now:%Y-%m}"
    first = await settle(db, period, now=now, close=False)
    assert (first.ledger.approved, first.ledger.lines) == (2, 2)
    assert (first.statements.opened, first.statements.assigned) == (1, 2)  # written straight into it
    async with db.transaction():  # approve turns nested loops off for its one statement only
        await ledger.approve(db, now, now, ledger.LedgerReport(), statements.StatementReport())
        assert await db.fetchval("SHOW enable_nestloop") == "on"
    again = await settle(db, period, now=now + dt.timedelta(seconds=1), close=False)
    assert again.ledger.lines == 0  # settling twice never pays twice
    lines = await db.fetch("SELECT kind, amount_minor, statement_id FROM ledger_lines ORDER BY kind")
    assert [(line["kind"], line["amount_minor"]) for line in lines] == [("cpa", 250), ("cps", 1300)]
    assert lines[0]["statement_id"] is not None and lines[0]["statement_id"] == lines[1]["statement_id"]
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="has ledger lines"):
        await db.execute("DELETE FROM statements")  # not even an open one, once lines are in it
    await _a_close_waits_for_lines_being_written(settings, db, lines[0]["statement_id"], prog.offer_id)

    _start, end = statements.month_bounds(period)
    closing = dt.datetime.combine(end, dt.time(1), dt.UTC)
    closed = await settle(db, period, now=closing)
    assert closed.statements.closed == 1
    statement = await db.fetchrow("SELECT * FROM statements")
    assert (statement["status"], statement["total_minor"], statement["payable"]) == ("closed", 1550, True)
    assert statement["number"].startswith(f"CM-{period}-")

    # Immutable: the database refuses changes to the statement and its lines.
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("UPDATE statements SET total_minor = 0 WHERE id = $1", statement["id"])
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("UPDATE ledger_lines SET amount_minor = 1")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("DELETE FROM ledger_lines")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("DELETE FROM statements")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="only join an open statement"):
        await db.execute(  # settle writes lines straight into open statements: never into a closed one
            """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor,
                                        basis, occurred_at, statement_id)
               SELECT 'late', 'cps', merchant_id, partner_id, $2, currency, 1, 'x', now(), id
               FROM statements WHERE id = $1""",
            statement["id"],
            prog.offer_id,
        )
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="only join an open statement"):
        await db.execute(  # ... nor into one that does not exist
            """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor,
                                        basis, occurred_at, statement_id)
               VALUES ('ghost', 'cps', $1, $2, $3, 'USD', 1, 'x', now(), 999999)""",
            statement["merchant_id"],
            statement["partner_id"],
            prog.offer_id,
        )

    # The first export pins its hash; re-exporting gives the same bytes, also after it is marked paid.
    first_csv = await statements.export(db, statement["id"], "csv")
    first_pdf = await statements.export(db, statement["id"], "pdf")
    await statements.mark_paid(db, statement["id"], closing)
    assert await statements.export(db, statement["id"], "csv") == first_csv
    assert await statements.export(db, statement["id"], "pdf") == first_pdf
    pinned = await db.fetchrow("SELECT csv_sha256, pdf_sha256, status FROM statements WHERE id = $1", statement["id"])
    assert (pinned["csv_sha256"], pinned["pdf_sha256"]) == (sha256_hex(first_csv), sha256_hex(first_pdf))
    assert pinned["status"] == "paid"
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):  # a pinned hash cannot be replaced
        await db.execute("UPDATE statements SET csv_sha256 = 'x' WHERE id = $1", statement["id"])

    # A refund after the close: a proportional reversal in the next open statement, as an adjustment.
    async with tracker_client(settings) as (_app, client):
        response = await postback(client, secret, {**base, "type": "refund", "order_id": "A1", "amount": "29.99"})
        assert response.status_code == 200
    await drain(settings, 4, db)
    next_period = f"{end:%Y-%m}"
    report = await settle(db, next_period, now=closing + dt.timedelta(hours=1), close=False)
    assert report.ledger.reversals == 1
    reversal = await db.fetchrow("SELECT * FROM ledger_lines WHERE kind LIKE 'reversal:%'")
    assert reversal["amount_minor"] == -300  # 10% of 129.99 is 13.00; 29.99 of it refunded takes back 3.00
    later = await db.fetchrow("SELECT * FROM statements WHERE id = $1", reversal["statement_id"])
    assert later["status"] == "open" and later["period_start"] == end
    doc = await statements.document(db, later["id"])
    assert [line.adjustment for line in doc.lines] == [True]
