"""A closed statement's exports are kept as bytes from their first export (migration 0020), so a later export gives
those bytes even when what draws them changes: a new translation, Babel's CLDR data, the PDF library or its font.
The kept bytes themselves never change, and only a closed statement's pinned export can be kept."""

from __future__ import annotations

import asyncpg
import pytest

from billing import exports, statements
from billing.exports import sha256_hex
from tests.integration.test_statement_locale import closed  # noqa: F401  (the fixture)

KINDS = ("csv", "pdf")


async def test_a_closed_statement_gives_its_first_bytes_after_the_drawing_changed(db, closed, monkeypatch):  # noqa: F811
    sid = closed["s_pl"]
    first = {kind: await statements.export(db, sid, kind) for kind in KINDS}
    kept = {r["kind"]: bytes(r["data"]) for r in await db.fetch("SELECT kind, data FROM statement_exports "
                                                                  "WHERE statement_id = $1", sid)}  # fmt: skip
    assert kept == first
    # What draws the statement changes (as an upgraded library or catalogue would): the export does not.
    monkeypatch.setattr(exports, "statement_csv", lambda doc: b"drawn otherwise")
    monkeypatch.setattr(exports, "statement_pdf", lambda doc, **_: b"%PDF drawn otherwise")
    assert {kind: await statements.export(db, sid, kind) for kind in KINDS} == first
    # A closed statement never exported before is drawn by what draws it now, and that is what it keeps.
    other = closed["s_de"]
    assert await statements.export(db, other, "csv") == b"drawn otherwise"
    pinned = await db.fetchval("SELECT csv_sha256 FROM statements WHERE id = $1", other)
    assert pinned == sha256_hex(b"drawn otherwise")


async def test_a_statement_pinned_before_its_bytes_were_kept_must_draw_to_its_pin(db, closed, monkeypatch):  # noqa: F811
    """Statements exported before migration 0020 have a pinned SHA-256 and no kept bytes: they are drawn again,
    kept when they match, refused when they do not (the bytes a partner already has are the pinned ones)."""
    sid = closed["s_en"]
    data = await statements.export(db, sid, "csv")
    await db.execute("ALTER TABLE statement_exports DISABLE TRIGGER cm_statement_export_guard")
    await db.execute("DELETE FROM statement_exports WHERE statement_id = $1", sid)  # as before migration 0020
    await db.execute("ALTER TABLE statement_exports ENABLE TRIGGER cm_statement_export_guard")
    assert await statements.export(db, sid, "csv") == data
    assert await db.fetchval("SELECT count(*) FROM statement_exports WHERE statement_id = $1", sid) == 1

    pdf_sid = closed["s_de"]
    await statements.export(db, pdf_sid, "pdf")
    await db.execute("ALTER TABLE statement_exports DISABLE TRIGGER cm_statement_export_guard")
    await db.execute("DELETE FROM statement_exports WHERE statement_id = $1", pdf_sid)
    await db.execute("ALTER TABLE statement_exports ENABLE TRIGGER cm_statement_export_guard")
    monkeypatch.setattr(exports, "statement_pdf", lambda doc, **_: b"%PDF drawn otherwise")
    with pytest.raises(statements.StatementError, match="changed"):
        await statements.export(db, pdf_sid, "pdf")
    assert await db.fetchval("SELECT count(*) FROM statement_exports WHERE statement_id = $1", pdf_sid) == 0


async def test_kept_exports_never_change_and_only_a_closed_statements_pinned_bytes_are_kept(db, closed):  # noqa: F811
    sid = closed["s_pl"]
    await statements.export(db, sid, "csv")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="cannot change"):
        await db.execute("UPDATE statement_exports SET data = 'x' WHERE statement_id = $1", sid)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="cannot change"):
        await db.execute("DELETE FROM statement_exports WHERE statement_id = $1", sid)
    pinned = await db.fetchval("SELECT csv_sha256 FROM statements WHERE id = $1", sid)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="does not match"):  # bytes not its digest
        await db.execute("INSERT INTO statement_exports VALUES ($1, 'pdf', 'x', $2)", sid, pinned)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="only the pinned"):  # pdf not pinned yet
        await db.execute("INSERT INTO statement_exports VALUES ($1, 'pdf', 'x', $2)", sid, sha256_hex(b"x"))
    opened = await db.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           SELECT number || '-open', merchant_id, partner_id, currency, period_end, period_end + 30
           FROM statements WHERE id = $1 RETURNING id""",
        sid,
    )
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="only the pinned"):  # an open statement
        await db.execute("INSERT INTO statement_exports VALUES ($1, 'csv', 'x', $2)", opened, sha256_hex(b"x"))
    assert await db.fetchval("SELECT count(*) FROM statement_exports") == 1
