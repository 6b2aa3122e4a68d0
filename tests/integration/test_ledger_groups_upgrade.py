"""Upgrading a database settled the old way (a ledger line per paid click, one cpm line per month): the migration
that groups statement lines splits the old lines and records their events as paid, so the next settle pays
only what the old one had not paid, and the portal's figures include the old lines."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from billing.settle import settle
from clickmint.migrate import migrate
from portal import partner_data
from schemas import MIGRATIONS_DIR
from tests.conftest import Servers, _admin, _with_database

JAN = dt.datetime(2025, 1, 10, tzinfo=dt.UTC)


@pytest.fixture
async def old_database(servers: Servers, tmp_path: Path) -> str:
    import secrets

    name = "clickmint_up_" + secrets.token_hex(4)
    await _admin(servers.database_url, f'CREATE DATABASE "{name}"')
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name.endswith("_ledger_groups.sql"):
            break
        shutil.copy(path, before / path.name)
    url = _with_database(servers.database_url, name)
    await migrate(url, before)
    yield url
    await _admin(servers.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _event(conn: asyncpg.Connection, kind: str, at: dt.datetime, ids: tuple[int, int, int], **extra) -> str:
    event_id = str(uuid.uuid4())
    link, offer, partner = ids
    await conn.execute(
        """INSERT INTO events (id, ts, type, link_id, offer_id, partner_id, country, sub1, is_unique, payload,
                               ingested_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'DE', $7, $8, '{}', $9)""",
        event_id,
        at,
        kind,
        link,
        offer,
        partner,
        extra.get("sub1", "s"),
        kind == "click",
        extra.get("ingested_at", at),
    )
    return event_id


async def test_old_lines_are_split_and_their_events_never_paid_again(old_database: str) -> None:
    conn = await asyncpg.connect(old_database)
    try:
        merchant = await conn.fetchval("INSERT INTO merchants (slug, name) VALUES ('m', 'M') RETURNING id")
        offer = await conn.fetchval(
            """INSERT INTO offers (merchant_id, name, destination_url, currency, fee_plan)
               VALUES ($1, 'O', 'https://shop.example/', 'USD', '{"cpc": 20, "cpm": 150}') RETURNING id""",
            merchant,
        )
        partner = await conn.fetchval("INSERT INTO partners (name, email) VALUES ('P', 'p@p.example') RETURNING id")
        await conn.execute("INSERT INTO partner_programmes VALUES ($1, $2, 'approved')", partner, merchant)
        link = await conn.fetchval(
            "INSERT INTO links (code, partner_id, offer_id) VALUES ('old-link', $1, $2) RETURNING id", partner, offer
        )
        ids = (link, offer, partner)
        paid_at = JAN + dt.timedelta(days=5)
        clicks = [await _event(conn, "click", JAN, ids) for _ in range(3)]
        views = [await _event(conn, "view", JAN, ids) for _ in range(1000)]
        lines = [(c, "cpc", 20, JAN) for c in clicks]  # the old settle: a line per click, a cpm line per month
        lines.append((f"cpm:{offer}:{partner}:2025-01:1", "cpm", 150, dt.datetime(2025, 1, 31, 23, 59, tzinfo=dt.UTC)))
        for source, kind, amount, at in lines:
            await conn.execute(
                """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor,
                                            basis, occurred_at, created_at)
                   VALUES ($1, $2, $3, $4, $5, 'USD', $6, 'old', $7, $8)""",
                source,
                kind,
                merchant,
                partner,
                offer,
                amount,
                at,
                paid_at,
            )
        late_click = await _event(conn, "click", JAN, ids, sub1="late", ingested_at=paid_at + dt.timedelta(days=1))
        for _ in range(7):
            await _event(conn, "view", JAN, ids, sub1="late", ingested_at=paid_at + dt.timedelta(days=1))

        await migrate(old_database)
        assert await conn.fetchval("SELECT count(*) FROM ledger_splits") == 4
        paid = await conn.fetch("SELECT kind, count(*) AS n FROM ledger_line_events GROUP BY 1 ORDER BY 1")
        assert [(r["kind"], r["n"]) for r in paid] == [("cpc", 3), ("cpm", 1000)]

        await settle(conn, "2025-01", now=dt.datetime(2025, 2, 1, 1, tzinfo=dt.UTC))
        new = await conn.fetch("SELECT kind, quantity, amount_minor FROM ledger_lines WHERE quantity IS NOT NULL")
        # The late click: 0.20; the 7 late views: a day's group of its own, round(7 x 0.15) = 1 cent.
        assert sorted((r["kind"], r["quantity"], r["amount_minor"]) for r in new) == [("cpc", 1, 20), ("cpm", 7, 1)]
        paid_now = await conn.fetchval("SELECT line_id FROM ledger_line_events WHERE event_id = $1", late_click)
        assert paid_now is not None
        stats = await partner_data.stats(conn, partner, "30d", "period", dt.date(2025, 1, 1), dt.date(2025, 1, 31))
        (usd,) = stats["money"]
        assert (usd["commission_approved_minor"], usd["commission_pending_minor"]) == (3 * 20 + 150 + 20 + 1, 0)
        assert views
    finally:
        await conn.close()
