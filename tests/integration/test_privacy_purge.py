"""Privacy purge: no trace of the customer or partner left in any table, the money records unchanged."""

from __future__ import annotations

import datetime as dt
import hashlib

import asyncpg
import pytest

from billing import privacy, statements
from billing.exports import sha256_hex
from billing.settle import settle
from kernel.settings import Settings
from tests.conftest import Servers
from tests.factories import Programme, programme
from tests.helpers import cli_env, click_id_of, drain, postback, run_cli, tracker_client

CUSTOMER = "cust-8842-alice@example.com"
OTHER = "cust-1177-bob@example.com"
AGENT = "Mozilla/5.0 (PurgeTest; Alice's phone)"
OTHER_AGENT = "Mozilla/5.0 (PurgeTest; Bob's laptop)"


async def _dump(db: asyncpg.Connection) -> str:
    """Every row of every table as text (json, arrays and all), partitions included."""
    tables = [r["tablename"] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    rows: list[str] = []
    for table in tables:
        rows += [r[0] for r in await db.fetch(f'SELECT t::text FROM "{table}" t')]
    return "\n".join(rows)


async def _money(db: asyncpg.Connection) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    lines = await db.fetch("SELECT id, source, kind, amount_minor, basis, statement_id FROM ledger_lines ORDER BY id")
    sheets = await db.fetch(
        "SELECT id, status, total_minor, carried_in_minor, carried_out_minor, csv_sha256 FROM statements ORDER BY id"
    )
    return [tuple(r) for r in lines], [tuple(r) for r in sheets]


async def _cli(settings: Settings, *args: str) -> tuple[int, str]:
    code, out, err = await run_cli(cli_env(settings), *args)
    return code, out + err


async def _sales(settings: Settings, db: asyncpg.Connection, prog: Programme) -> None:
    """Alice and Bob each click (with sub ids) and buy; the month is settled and closed, its CSV pinned."""
    await db.execute("UPDATE offers SET hold_days = 0")
    secret = await db.fetchval("SELECT postback_secret FROM offers WHERE id = $1", prog.offer_id)
    async with tracker_client(settings) as (_app, client):
        for customer, agent, order in ((CUSTOMER, AGENT, "A-1"), (OTHER, OTHER_AGENT, "B-1")):
            click = await client.get(
                f"/c/{prog.code}?sub1=spring&sub2={customer}&source=newsletter", headers={"user-agent": agent}
            )
            payload = {
                "offer_id": prog.offer_id,
                "click_id": click_id_of(click),
                "order_id": order,
                "amount": "100.00",
                "customer_id": customer,
            }
            assert (await postback(client, secret, payload)).status_code == 200
    await drain(settings, 4, db)
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    await settle(db, f"{now:%Y-%m}", now=now, close=False)
    _start, end = statements.month_bounds(f"{now:%Y-%m}")
    await settle(db, f"{now:%Y-%m}", now=dt.datetime.combine(end, dt.time(1), dt.UTC))
    statement_id = await db.fetchval("SELECT id FROM statements WHERE status = 'closed'")
    await statements.export(db, statement_id, "csv")  # pins the CSV's SHA-256


async def test_customer_purge_leaves_no_trace_and_the_money_whole(
    servers: Servers, settings: Settings, db: asyncpg.Connection
) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    slug = await db.fetchval("SELECT slug FROM merchants WHERE id = $1", prog.merchant_id)
    await _sales(settings, db, prog)
    before = await _money(db)
    statement_id = await db.fetchval("SELECT id FROM statements")
    csv_before = await statements.export(db, statement_id, "csv")
    dump = await _dump(db)
    assert CUSTOMER in dump and AGENT in dump and "203.0.113.0" in dump  # the scan sees the real rows

    code, out = await _cli(settings, "purge", "customer", CUSTOMER, "--merchant", slug, "--by", "T-1")
    assert code == 0, out
    assert "customer purged" in out

    dump = await _dump(db)
    assert CUSTOMER not in dump and AGENT not in dump
    # Bob was not asked about: his data is all there.
    assert OTHER in dump and OTHER_AGENT in dump
    # Alice's click and purchase keep no address, agent, sub ids or source, in columns or payload.
    rows = await db.fetch(
        """SELECT e.* FROM events e JOIN conversions c ON c.click_id = e.click_id OR c.event_id = e.id
           WHERE c.order_id = 'A-1'"""
    )
    assert sorted(r["type"] for r in rows) == ["click", "purchase"]
    for row in rows:
        assert (row["ip_prefix"], row["sub1"], row["sub2"], row["source"]) == ("", None, None, None)
        assert '"ip"' not in row["payload"] and '"ua"' not in row["payload"] and '"sub2"' not in row["payload"]
    stone = await db.fetchval("SELECT customer_ref FROM conversions WHERE order_id = 'A-1'")
    assert stone.startswith("purged-")
    assert await db.fetchval("SELECT orders FROM customers WHERE customer_ref = $1", stone) == 1

    # The money: every line, every statement total and the pinned CSV are what they were.
    assert await _money(db) == before
    assert await statements.export(db, statement_id, "csv") == csv_before
    assert sha256_hex(csv_before) == await db.fetchval("SELECT csv_sha256 FROM statements WHERE id = $1", statement_id)

    audit = await db.fetchrow("SELECT * FROM privacy_requests")
    assert (audit["kind"], audit["merchant_id"], audit["tombstone"], audit["requested_by"]) == (
        "customer",
        prog.merchant_id,
        stone,
        "T-1",
    )
    assert audit["subject_sha256"] == hashlib.sha256(f"{prog.merchant_id}:{CUSTOMER}".encode()).hexdigest()
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("DELETE FROM privacy_requests")

    with pytest.raises(privacy.PurgeError, match="no merchant"):
        await privacy.purge_customer(db, "no-such-shop", CUSTOMER)


async def test_partner_purge_erases_contact_data_and_keeps_closed_statements(
    servers: Servers, settings: Settings, db: asyncpg.Connection
) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"}, email="Alice.Partner@example.com")
    await db.execute("UPDATE partners SET name = 'Alice Partner Ltd' WHERE id = $1", prog.partner_id)
    idle = await programme(db, merchant_id=prog.merchant_id, email="bob.partner@example.com")
    await db.execute("UPDATE partners SET name = 'Bob Partner' WHERE id = $1", idle.partner_id)
    await _sales(settings, db, prog)
    user_id = await db.fetchval(
        """INSERT INTO users (email, name, role, partner_id, password_hash)
           VALUES ('alice.partner@example.com', 'Alice Login', 'partner', $1, 'argon2id$x') RETURNING id""",
        prog.partner_id,
    )
    await db.execute(
        """INSERT INTO sessions (token_sha256, user_id, csrf_token, expires_at)
           VALUES ('\\x01', $1, 'csrf', now() + interval '1 day')""",
        user_id,
    )
    await db.execute(
        "INSERT INTO outbox (to_email, subject, body) VALUES ('alice.partner@example.com', 'Hi Alice', 'Dear Alice')"
    )
    await db.execute(
        """INSERT INTO partner_postbacks (partner_id, url, secret, events)
           VALUES ($1, 'https://alice-partner.example/pb?c={click_id}', 's3cret', '{purchase}')""",
        prog.partner_id,
    )
    before = await _money(db)
    statement_id = await db.fetchval("SELECT id FROM statements WHERE partner_id = $1", prog.partner_id)
    csv_before = await statements.export(db, statement_id, "csv")
    assert b"Alice Partner Ltd" in csv_before

    code, out = await _cli(settings, "purge", "partner", str(prog.partner_id))
    assert code == 0, out
    dump = await _dump(db)
    for trace in (
        "Alice.Partner@example.com",
        "alice.partner@example.com",
        "Alice Login",
        "Dear Alice",
        "alice-partner",
    ):
        assert trace not in dump, trace
    # Its closed statement prints its name, and its bytes are pinned: the name stays, nothing else.
    assert await db.fetchval("SELECT name FROM partners WHERE id = $1", prog.partner_id) == "Alice Partner Ltd"
    assert await statements.export(db, statement_id, "csv") == csv_before
    assert await _money(db) == before
    user = await db.fetchrow("SELECT * FROM users WHERE id = $1", user_id)
    assert (user["status"], user["password_hash"], user["name"]) == ("disabled", None, "")
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0
    assert "the partner name" in (
        await db.fetchval("SELECT kept FROM privacy_requests WHERE partner_id = $1", prog.partner_id)
    )

    # A partner without closed statements loses its name too.
    code, out = await _cli(settings, "purge", "partner", str(idle.partner_id))
    assert code == 0, out
    row = await db.fetchrow("SELECT name, email FROM partners WHERE id = $1", idle.partner_id)
    assert row["name"].startswith("purged-") and row["email"].endswith("@purged.invalid")
    assert "Bob Partner" not in await _dump(db)

    code, out = await _cli(settings, "purge", "partner", "999999")
    assert code == 2 and "no partner 999999" in out
