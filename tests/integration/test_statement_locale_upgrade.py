"""Upgrading to statements with a language (migration 0019): a statement closed before re-exports byte for byte
(English, layout 2, the SHA-256 the code before the upgrade pinned), even for a partner and a merchant that have
chosen Polish since; the next statement closed after the upgrade is in Polish."""

from __future__ import annotations

import datetime as dt
import shutil
import uuid
from pathlib import Path

import asyncpg
import pytest

from billing import exports, statements
from billing.settle import settle
from clickmint.migrate import migrate
from schemas import MIGRATIONS_DIR
from tests.conftest import Servers, _admin, _with_database

# What the exports of the statement _closed_before() makes gave before migration 0019 (commit 052c13d, layout 2).
BEFORE = {
    "csv": "a78c16316d13193c6b1e8a8214d79331d5089ca46ce03b495be40d4a23faa7c0",
    "pdf": "a28ba9078823a5618849528befd2170b5e5575f13b8c62d1f25aff188bff151b",
}
CLOSED_AT = dt.datetime(2026, 11, 2, 3, tzinfo=dt.UTC)


@pytest.fixture
async def old_database(servers: Servers, tmp_path: Path) -> str:
    import secrets

    name = "clickmint_up_" + secrets.token_hex(4)
    await _admin(servers.database_url, f'CREATE DATABASE "{name}"')
    before = tmp_path / "before"
    before.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        if path.name.endswith("_statement_locale.sql"):
            break
        shutil.copy(path, before / path.name)
    url = _with_database(servers.database_url, name)
    await migrate(url, before)
    yield url
    await _admin(servers.database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _world(conn: asyncpg.Connection) -> dict[str, int]:
    """A merchant and a partner with two commissions in October 2026 and one in November."""
    m = await conn.fetchval(
        "INSERT INTO merchants (slug, name, currency, address, payment_terms) "
        "VALUES ('sklep', 'Sklep', 'EUR', 'ul. Długa 5\nWarszawa', 'Przelew w ciągu 14 dni.') RETURNING id"
    )
    offer = await conn.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, hold_days)
           VALUES ($1, 'Buty', 'https://shop.example/', 'EUR', 0) RETURNING id""",
        m,
    )
    p = await conn.fetchval(
        "INSERT INTO partners (name, email, address) VALUES ('Paweł', 'p@p.example', 'Łódź') RETURNING id"
    )
    await conn.execute("INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
                       p, m)  # fmt: skip
    for n, (day, amount) in enumerate(((10, 123456), (20, 4500), (40, 7000))):
        event = uuid.UUID(int=n + 1)
        await conn.execute(
            """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, action, status,
                                        hold_until, via, authenticated)
               VALUES ($1, $2, 'action', $3, $4, $5, 'signup', 'pending', $2, 'postback', true)""",
            event, dt.datetime(2026, 10, 1, tzinfo=dt.UTC) + dt.timedelta(days=day), m, offer, p,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO commissions (event_id, kind, amount_minor, currency, basis) VALUES ($1, 'cpa', $2, 'EUR', $3)",
            event, amount, f"signup {n}",
        )  # fmt: skip
    return {"merchant": m, "partner": p}


async def test_a_statement_closed_before_the_upgrade_keeps_its_bytes(old_database: str) -> None:
    conn = await asyncpg.connect(old_database)
    try:
        ids = await _world(conn)
        # Closed by the code before 0019 (layout 2), its exports pinned then.
        await settle(conn, "2026-10", now=CLOSED_AT, close=False)
        sid = await conn.fetchval("SELECT id FROM statements WHERE period_start = '2026-10-01'")
        await _close_as_before(conn, sid)
        await conn.execute(
            "UPDATE statements SET csv_sha256 = $2, pdf_sha256 = $3 WHERE id = $1", sid, BEFORE["csv"], BEFORE["pdf"]
        )
        await migrate(old_database)
        assert await conn.fetchval("SELECT locale FROM statements WHERE id = $1", sid) is None
        # Since then its partner's user and its merchant chose Polish: it stays English, byte for byte.
        await conn.execute("UPDATE merchants SET default_locale = 'pl'")
        await conn.execute(
            "INSERT INTO users (email, role, partner_id, locale) VALUES ('u@p.example', 'partner', $1, 'pl')",
            ids["partner"],
        )
        doc = await statements.document(conn, sid)
        assert (doc.layout, doc.locale) == (2, "en")
        for kind in ("csv", "pdf"):  # export() raises StatementError if the bytes differ from the pinned SHA-256
            assert exports.sha256_hex(await statements.export(conn, sid, kind)) == BEFORE[kind]
        assert b"Date (UTC),Reference,Kind" in await statements.export(conn, sid, "csv")
        old_detail = (await statements.detail(conn, sid)).decode().split("\r\n")
        assert old_detail[0] == "Line,Reference,Kind,Date (UTC),Event" and len(old_detail) > 2  # layout 2: English
        # The next statement closes after the upgrade: in Polish, layout 3.
        await settle(conn, "2026-11", now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC), close=True)
        nov = await conn.fetchval("SELECT id FROM statements WHERE period_start = '2026-11-01'")
        assert await conn.fetchval("SELECT locale FROM statements WHERE id = $1", nov) == "pl"
        assert b"Data (UTC),Odniesienie,Rodzaj" in await statements.export(conn, nov, "csv")
        assert (await statements.detail(conn, nov)).startswith(b"Pozycja,Odniesienie,Rodzaj,Data (UTC),Zdarzenie\r\n")
    finally:
        await conn.close()


async def _close_as_before(conn: asyncpg.Connection, sid: int) -> None:
    """What billing/statements.py's _close wrote before migration 0019 (layout 2, no language)."""
    await conn.execute(
        """UPDATE statements s SET
               carried_in_minor = 0, total_minor = x.total, payable = x.total > 0 AND x.total >= s.min_payout_minor,
               carried_out_minor = CASE WHEN x.total > 0 AND x.total >= s.min_payout_minor THEN 0 ELSE x.total END,
               closed_at = $2, status = 'closed',
               names = jsonb_build_object('merchant', m.name, 'partner', p.name, 'offers', x.offers, 'layout', 2,
                                          'merchant_address', coalesce(m.address, ''),
                                          'partner_address', coalesce(p.address, ''),
                                          'payment_terms', coalesce(m.payment_terms, ''))
           FROM (SELECT sum(l.amount_minor) AS total, jsonb_object_agg(o.id::text, o.name) AS offers
                 FROM ledger_lines l JOIN offers o ON o.id = l.offer_id WHERE l.statement_id = $1) x,
                merchants m, partners p
           WHERE s.id = $1 AND m.id = s.merchant_id AND p.id = s.partner_id""",
        sid,
        CLOSED_AT,
    )
