"""Issue 19 "Languages", statement exports on real PostgreSQL: a statement's language is fixed when it closes (the
partner's user's setting, else the merchant's default, else English), its PDF and CSV are written in it (the CSV's
machine columns unchanged), they re-export byte for byte whatever changes later, and payout batches are unaffected."""

from __future__ import annotations

import csv
import datetime as dt
import io

import asyncpg
import pytest

from billing import exports, payouts, statements
from billing.settle import settle
from tests.integration.test_invoices import NOV, SEALER, _merchant
from tests.integration.test_payouts import _details, _partner
from tests.unit.test_exports import _pdf_text


async def _user(db: asyncpg.Connection, partner_id: int, email: str, locale: str | None) -> None:
    await db.execute(
        "INSERT INTO users (email, name, role, partner_id, locale) VALUES ($1, 'U', 'partner', $2, $3)",
        email, partner_id, locale,
    )  # fmt: skip


@pytest.fixture
async def closed(db: asyncpg.Connection) -> dict[str, int]:
    """A Spanish self-billing merchant whose default is German; a Polish partner whose second user chose Polish
    (its first chose nothing, a later one French); a German business with no user; an English-speaking one."""
    m, offers = await _merchant(db, "tienda", True)
    await db.execute("UPDATE merchants SET default_locale = 'de' WHERE id = $1", m)
    ids = {"merchant": m}
    ids["pl"] = await _partner(db, m, offers, "Pawel", [(123456, "EUR")])
    ids["de"] = await _partner(db, m, offers, "Dieter", [(5000, "EUR")])
    ids["en"] = await _partner(db, m, offers, "Emma", [(700, "EUR")])
    await _user(db, ids["pl"], "first@pawel.example", None)
    await _user(db, ids["pl"], "second@pawel.example", "pl")
    await _user(db, ids["pl"], "third@pawel.example", "fr")
    await _user(db, ids["en"], "emma@emma.example", "en")
    await _details(db, m, ids["pl"], method="sepa", iban="PL61109010140000071219812874", country="PL",
                   vat_number="PL5260250995", legal_name="Paweł Nowak sp. z o.o.",
                   address="ul. Długa 5, Łódź")  # fmt: skip
    await _details(db, m, ids["de"], method="sepa", iban="DE89370400440532013000", vat_number="DE136695976",
                   legal_name="Dieter GmbH")  # fmt: skip
    report = await settle(db, NOV, now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC), close=True, sealer=SEALER)
    assert report.statements.closed == 3
    for key in ("pl", "de", "en"):
        ids[f"s_{key}"] = await db.fetchval("SELECT id FROM statements WHERE partner_id = $1", ids[key])
    return ids


async def test_the_language_is_fixed_at_close_partner_then_merchant(db, closed):
    chosen = dict(await db.fetch("SELECT partner_id, locale FROM statements"))
    assert chosen == {closed["pl"]: "pl", closed["de"]: "de", closed["en"]: "en"}
    layouts = {r["partner_id"]: r["layout"] for r in await db.fetch("SELECT partner_id, names->'layout' AS layout "
                                                                    "FROM statements")}  # fmt: skip
    assert set(layouts.values()) == {str(exports.LAYOUT)} and exports.LAYOUT == 3
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="cannot change"):
        await db.execute("UPDATE statements SET locale = 'fr' WHERE id = $1", closed["s_pl"])


async def test_a_polish_partners_statement_exports_in_polish(db, closed):
    pdf = await statements.export(db, closed["s_pl"], "pdf")
    text = _pdf_text(exports.statement_pdf(await statements.document(db, closed["s_pl"]), compress=False))
    for expected in (
        "Zestawienie CM-2026-11-",
        "Wystawiono2 gru 2026",  # issued: the day it closed, as Polish writes it
        "Okres1 lis 2026 do 30 lis 2026",
        "Od (sprzedawca)",
        "Do (partner)",
        "1\u00a0234,56",  # money grouped and pointed the Polish way
        "minimalną wypłatę 0,00 EUR",
        "Faktura (samofakturowanie) SB-TIENDA-",
        "Paweł Nowak sp. z o.o.",  # Polish letters print (embedded font), never '?'
        "ul. Długa 5, Łódź",
        "Shoes: prowizja cpa",
        "odwrotneobciążenie",  # the VAT rate column: the rule, wrapped in its cell
        "Odwrotne obciążenie: VAT rozlicza nabywca",
        "Samofakturowanie: faktura wystawiona przez nabywcę",
        "strona 1 z 1",
    ):
        assert expected in text, expected
    for english in ("Statement", "Issued", "Payment terms", "Self-billed", "Reverse charge", "page 1 of"):
        assert english not in text, english
    rows = list(csv.reader(io.StringIO((await statements.export(db, closed["s_pl"], "csv")).decode())))
    header = ["Data (UTC)", "Odniesienie", "Rodzaj", "Oferta", "Opis", "Ilość", "Stawka", "Kwota", "Korekta"]
    assert header in rows
    line = rows[rows.index(header) + 1]
    assert line[0] == "2026-11-10T00:00:00Z" and line[2] == "cpa" and line[7] == "1234.56" and line[8] == "no"
    labels = {row[0]: row[1] for row in rows if len(row) == 2}
    assert labels["Wystawiono"] == "2026-12-02" and labels["Okres"] == "2026-11-01 do 2026-11-30"
    assert labels["Suma"] == "1234.56" and labels["Do wypłaty"] == "tak" and labels["Stan"] == "closed"
    assert ["Pozycja faktury", "Netto", "Stawka VAT", "VAT", "Brutto"] in rows
    assert ["Shoes: prowizja cpa", "1234.56", "reverse charge", "0.00", "1234.56"] in rows
    assert ["Odwrotne obciążenie: VAT rozlicza nabywca (art. 196 dyrektywy Rady 2006/112/WE)."] in rows
    assert await statements.export(db, closed["s_pl"], "pdf") == pdf
    detail = list(csv.reader(io.StringIO((await statements.detail(db, closed["s_pl"])).decode())))
    assert detail[0] == ["Pozycja", "Odniesienie", "Rodzaj", "Data (UTC)", "Zdarzenie"]  # the events CSV's titles
    assert len(detail) > 1 and all(r[2] == "cpa" and r[3] == "2026-11-10T00:00:00Z" for r in detail[1:])  # values


async def test_a_german_statement_by_the_merchants_default(db, closed):
    text = _pdf_text(exports.statement_pdf(await statements.document(db, closed["s_de"]), compress=False))
    for expected in ("Abrechnung CM-2026-11-", "Ausgestellt02.12.2026", "50,00", "Gutschrift SB-TIENDA-",
                     "Steuerschuldnerschaft des Leistungsempfängers", "Seite 1 von 1"):  # fmt: skip
        assert expected in text, expected
    rows = list(csv.reader(io.StringIO((await statements.export(db, closed["s_de"], "csv")).decode())))
    assert ["Datum (UTC)", "Referenz", "Art", "Angebot", "Beschreibung", "Menge", "Satz", "Betrag", "Korrektur"] in rows
    assert ["Summe", "50.00"] in rows
    assert (await statements.detail(db, closed["s_de"])).startswith(b"Position,Referenz,Art,Datum (UTC),Ereignis\r\n")


async def test_exports_never_change_after_close(db, closed):
    before = {k: await statements.export(db, closed["s_pl"], k) for k in ("csv", "pdf")}
    await db.execute("UPDATE users SET locale = 'es' WHERE partner_id = $1", closed["pl"])
    await db.execute("UPDATE merchants SET default_locale = 'fr' WHERE id = $1", closed["merchant"])
    assert {k: await statements.export(db, closed["s_pl"], k) for k in ("csv", "pdf")} == before
    english = (await statements.export(db, closed["s_en"], "csv")).decode()
    assert "Date (UTC),Reference,Kind" in english and "Statement,CM-2026-11-" in english
    assert (await statements.detail(db, closed["s_en"])).startswith(b"Line,Reference,Kind,Date (UTC),Event\r\n")


async def test_an_open_statement_is_drafted_in_todays_choice(db, closed):
    await _partner(db, closed["merchant"], {"EUR": await db.fetchval("SELECT id FROM offers")}, "Later", [])
    later = await db.fetchval("SELECT id FROM partners WHERE name = 'Later'")
    sid = await db.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           VALUES ('CM-2026-12-999999', $1, $2, 'EUR', '2026-12-01', '2027-01-01') RETURNING id""",
        closed["merchant"], later,
    )  # fmt: skip
    assert (await statements.document(db, sid)).locale == "de"
    await _user(db, later, "later@later.example", "fr")
    doc = await statements.document(db, sid)
    assert (doc.locale, doc.layout) == ("fr", exports.LAYOUT)
    assert "non émis (ouvert)" in _pdf_text(exports.statement_pdf(doc, compress=False))


async def test_payout_batches_are_not_translated(db, closed):
    batch = await payouts.export(db, SEALER, closed["merchant"], NOV, "sepa", actor=payouts.Actor("t"))
    assert b'<InstdAmt Ccy="EUR">1234.56</InstdAmt>' in batch.data and b'<InstdAmt Ccy="EUR">50.00' in batch.data
    for word in (b"Zestawienie", b"Abrechnung", "Wypłata".encode()):
        assert word not in batch.data
