"""Statement exports: no cell a spreadsheet would run, numbers stay numbers, the same bytes every time."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import re
import subprocess
import sys
from decimal import Decimal

import pytest

from billing.exports import HEADER, StatementDoc, StatementLine, safe_cell, sha256_hex, statement_csv, statement_pdf

PAYLOADS = ["=1+1", "+SUM(A1:A9)", "-2+3", "@cmd", "\t=1", "\r=1", '=HYPERLINK("http://x")', "\uff1d1", "  =1"]
CLOSED = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)


def _doc(
    text: str = "Shop", lines: int = 3, currency: str = "USD", carried: int = 0, min_payout: int = 0
) -> StatementDoc:
    return StatementDoc(
        number="CM-2026-11-000001",
        merchant=text,
        partner=text,
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 12, 1),
        currency=currency,
        status="closed",
        closed_at=CLOSED,
        carried_in_minor=carried,
        min_payout_minor=min_payout,
        lines=tuple(
            StatementLine(
                dt.datetime(2026, 11, 2, tzinfo=dt.UTC) + dt.timedelta(hours=i),
                f"event-{i}",
                "cps",
                text,
                f"{text} {i}",
                1234 * (i + 1) * (-1 if i == 2 else 1),
                adjustment=i == 2,
            )
            for i in range(lines)
        ),
    )


@pytest.mark.parametrize("payload", PAYLOADS)
def test_no_text_cell_is_a_formula(payload: str) -> None:
    rows = list(csv.reader(io.StringIO(statement_csv(_doc(payload)).decode())))
    text_cells = [cell for row in rows for i, cell in enumerate(row) if not (len(row) == 9 and i == 7)]
    for cell in text_cells:
        assert not cell.startswith(("=", "+", "@", "\t", "\r", "\uff1d")), cell
        assert not (cell.startswith("-") and not _is_number(cell)), cell


def _is_number(cell: str) -> bool:
    try:
        Decimal(cell)
    except ArithmeticError:
        return False
    return True


@pytest.mark.parametrize(
    ("text", "safe"), [("=1", "'=1"), ("plain", "plain"), ("-5", "'-5"), ("", ""), (" +1", "' +1")]
)
def test_safe_cell(text: str, safe: str) -> None:
    assert safe_cell(text) == safe


def test_amounts_stay_numbers_and_sum_to_the_total() -> None:
    doc = _doc(carried=500)
    rows = list(csv.reader(io.StringIO(statement_csv(doc).decode())))
    header = rows.index(list(HEADER))
    amounts = [Decimal(row[7]) for row in rows[header + 1 : header + 1 + len(doc.lines)]]
    assert sum(amounts) == Decimal(1234 + 2468 - 3702) / 100
    totals = dict(row for row in rows if len(row) == 2)
    assert Decimal(totals["Total"]) == Decimal(500 + 1234 + 2468 - 3702) / 100


@pytest.mark.parametrize(
    ("carried", "min_payout", "payable", "carried_out"),
    [(0, 0, True, 0), (0, 3702, True, 0), (0, 3703, False, 3702), (-5000, 0, False, -1298)],
)
def test_minimum_payout_boundary(carried: int, min_payout: int, payable: bool, carried_out: int) -> None:
    # The lines net to zero (12.34 + 24.68 - 37.02), so the total is what is carried in.
    doc = _doc(carried=carried + 3702, min_payout=min_payout)
    assert doc.total_minor == carried + 3702
    assert (doc.payable, doc.carried_out_minor) == (payable, carried_out)


@pytest.mark.parametrize(("currency", "shown"), [("JPY", "1234"), ("KWD", "1.234"), ("USD", "12.34")])
def test_currency_exponents(currency: str, shown: str) -> None:
    rows = list(csv.reader(io.StringIO(statement_csv(_doc(currency=currency, lines=1)).decode())))
    assert [row[7] for row in rows if len(row) == 9][1] == shown


def test_pdf_is_deterministic_here_and_in_another_process() -> None:
    doc = _doc("Café 東京 🚀", lines=40)
    first, second = statement_pdf(doc), statement_pdf(doc)
    assert first.startswith(b"%PDF") and first == second
    code = (
        "import sys, datetime as dt; sys.path.insert(0, '.');"
        "from tests.unit.test_exports import _doc; from billing.exports import statement_pdf, sha256_hex;"
        "print(sha256_hex(statement_pdf(_doc('Café 東京 🚀', lines=40))))"
    )
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    )
    assert other.stdout.strip() == sha256_hex(first)


def test_pdf_shows_the_statement() -> None:
    text = _pdf_text(statement_pdf(_doc("Acme"), compress=False))
    assert "CM-2026-11-000001" in text and "Acme" in text and "12.34" in text


def test_csv_is_deterministic() -> None:
    assert statement_csv(_doc()) == statement_csv(_doc())


# --- the layout of statements closed before lines were grouped: pinned bytes, never changed ------------------


def _legacy(text: str, lines: int) -> StatementDoc:
    return StatementDoc(
        number="CM-2026-11-000001",
        merchant=text,
        partner=text,
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 12, 1),
        currency="USD",
        status="closed",
        closed_at=CLOSED,
        carried_in_minor=250,
        min_payout_minor=1000,
        layout=1,
        lines=tuple(
            StatementLine(
                dt.datetime(2026, 11, 2, tzinfo=dt.UTC) + dt.timedelta(hours=i),
                f"event-{i}",
                "cps" if i % 3 else "reversal:cps",
                f"{text} offer {i} " + "long name " * i,
                f"{text} {i} basis",
                1234 * (i + 1) * (-1 if i % 3 == 0 else 1),
                adjustment=i % 3 == 0,
            )
            for i in range(lines)
        ),
    )


@pytest.mark.parametrize(
    ("text", "lines", "csv_sha", "pdf_sha"),
    [  # the SHA-256 the layout-1 code gave before this module was split (commit cd4e2ec)
        (
            "Shop",
            3,
            "748e3d23324945ada572fe6ef63e4f8e5f833e681b6d7a0cd07c2a887d301850",
            "32cd402c4ed731b03407d05c8b9a4776ac735131ee3e725cf1086a6d0e02bcc1",
        ),
        (
            "Café 東京 🚀",
            40,
            "437bcfb431d4f7605eb7151db9134f09894a96d46c1b00364df205b472215205",
            "f409bfe02f42a8ccc5e7e2e75659d8fa83d14d23792ebf9cdedfc928eae2656e",
        ),
    ],
)
def test_statements_closed_before_keep_their_bytes(text: str, lines: int, csv_sha: str, pdf_sha: str) -> None:
    doc = _legacy(text, lines)
    assert (sha256_hex(statement_csv(doc)), sha256_hex(statement_pdf(doc))) == (csv_sha, pdf_sha)


# --- the current layout: parties, issue date, terms, grouped lines, pages, nothing cut --------------------------

LONG_ORDER = "ORDER-" + "7" * 240 + "-END"
LONG_OFFER = "Winter sale " + " ".join(f"w{i}" for i in range(60))


def _readable(lines: int = 60, closed: dt.datetime | None = CLOSED) -> StatementDoc:
    traffic = [
        StatementLine(
            dt.datetime(2026, 11, 1 + i % 28, tzinfo=dt.UTC),
            f"cpc:7:9:2026-11-{1 + i % 28:02d}:20:1",
            "cpc",
            LONG_OFFER,
            f"{100 + i} unique clicks x 0.20 USD",
            (100 + i) * 20,
            adjustment=False,
            quantity=100 + i,
            rate="0.20",
        )
        for i in range(lines)
    ]
    sale = StatementLine(
        dt.datetime(2026, 11, 3, 12, tzinfo=dt.UTC),
        "0190f0f0-0000-7000-8000-000000000001",
        "cps",
        LONG_OFFER,
        f"10% of 19.60 USD, order {LONG_ORDER}",
        196,
        adjustment=False,
    )
    return StatementDoc(
        number="CM-2026-11-000042",
        merchant="Acme Shop",
        partner="Dana Deals",
        period_start=dt.date(2026, 11, 1),
        period_end=dt.date(2026, 12, 1),
        currency="USD",
        status="closed" if closed else "open",
        closed_at=closed,
        carried_in_minor=0,
        min_payout_minor=5000,
        merchant_address="1 Market Street\nSpringfield 12345",
        partner_address="Flat 2, 9 High Road\nLeeds LS1 1AA",
        payment_terms="Paid by bank transfer within 30 days of the issue date.",
        lines=(sale, *traffic),
    )


def _pdf_text(raw: bytes) -> str:
    """The text an uncompressed PDF shows, its lines joined without separators (a wrapped word reads whole).

    Core fonts (layouts 1, 2) write Latin-1 strings; the embedded DejaVu (layout 3) writes glyph ids, read back
    through each font's /ToUnicode map, as a PDF reader does."""
    objects = {int(n): body for n, body in re.findall(rb"(?:^|\n)(\d+) 0 obj\n(.*?)endobj", raw, re.S)}
    maps: dict[bytes, dict[int, str] | None] = {}
    for name, ref in re.findall(rb"/(F\d+) (\d+) 0 R", raw):
        unicode = re.search(rb"/ToUnicode (\d+) 0 R", objects[int(ref)])
        maps[name] = (
            None
            if unicode is None
            else {
                int(glyph, 16): chr(int(char, 16))
                for glyph, char in re.findall(rb"<([0-9A-F]{4})> <([0-9A-F]{4,8})>", objects[int(unicode[1])])
            }
        )
    escapes = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}
    string = rb"\(((?:\\.|[^\\)])*)\)"
    out, font = [], None
    for match in re.finditer(rb"/(F\d+) [\d.]+ Tf|" + string + rb" Tj|\[((?:" + string + rb"|[^\]])*)\] TJ", raw, re.S):
        if match[1] is not None:
            font = maps.get(match[1])
            continue
        pieces = [match[2]] if match[2] is not None else [m[1] for m in re.finditer(string, match[3], re.S)]
        for piece in pieces:
            data = re.sub(rb"\\(.)", lambda m: escapes.get(m[1], m[1]), piece, flags=re.S)
            if font is None:
                out.append(data.decode("latin-1"))
            else:
                out.append("".join(font.get(int.from_bytes(data[i : i + 2]), "\ufffd") for i in range(0, len(data), 2)))
    return "".join(out)


@pytest.mark.parametrize(("layout", "day"), [(2, "2026-12-01"), (3, "Dec 1, 2026")])
def test_pdf_shows_issue_date_parties_addresses_terms_and_page_numbers(layout: int, day: str) -> None:
    raw = statement_pdf(dataclasses.replace(_readable(), layout=layout), compress=False)
    text = _pdf_text(raw)
    for expected in (
        "Statement CM-2026-11-000042",
        day,  # issued: the day it closed
        "Acme Shop",
        "1 Market Street",
        "Springfield 12345",
        "Dana Deals",
        "Leeds LS1 1AA",
        "Paid by bank transfer within 30 days",
        "minimum payout of 50.00 USD",
    ):
        assert expected in text, expected
    pages = raw.count(b"/Type /Page\n")
    assert pages >= 2
    for page in range(1, pages + 1):
        assert f"page {page} of {pages}" in text


def test_pdf_never_cuts_an_order_id_or_an_offer_name() -> None:
    text = _pdf_text(statement_pdf(_readable(lines=2), compress=False))
    assert LONG_ORDER in text
    assert LONG_OFFER.replace(" ", "") in text.replace(" ", "")
    assert "..." not in text


def test_an_open_statement_is_not_issued() -> None:
    doc = _readable(lines=1, closed=None)
    assert "not issued (open)" in _pdf_text(statement_pdf(doc, compress=False))
    assert ["Issued", "not issued (open)"] in list(csv.reader(io.StringIO(statement_csv(doc).decode())))


def test_csv_has_parties_terms_and_quantity_times_rate() -> None:
    rows = list(csv.reader(io.StringIO(statement_csv(_readable(lines=3)).decode())))
    heading = {row[0]: row[1] for row in rows if len(row) == 2}
    assert heading["Issued"] == "2026-12-01"
    assert heading["Merchant address"] == "1 Market Street\nSpringfield 12345"
    assert heading["Partner address"] == "Flat 2, 9 High Road\nLeeds LS1 1AA"
    assert heading["Payment terms"].startswith("Paid by bank transfer")
    table = [dict(zip(HEADER, row, strict=True)) for row in rows if len(row) == len(HEADER)][1:]
    assert table[0]["Reference"] == "0190f0f0-0000-7000-8000-000000000001" and table[0]["Quantity"] == ""
    for line in table[1:]:
        assert Decimal(line["Quantity"]) * Decimal(line["Rate"]) == Decimal(line["Amount"])


def test_current_layout_is_deterministic_in_another_process() -> None:
    first = statement_pdf(_readable())
    assert first == statement_pdf(_readable()) and statement_csv(_readable()) == statement_csv(_readable())
    code = (
        "import sys; sys.path.insert(0, '.');"
        "from tests.unit.test_exports import _readable; from billing.exports import statement_pdf, sha256_hex;"
        "print(sha256_hex(statement_pdf(_readable())))"
    )
    env = {"PYTHONHASHSEED": "7", "PATH": ""}
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert other.stdout.strip() == sha256_hex(first)


# --- layout 2 (English, closed before statements had a language): pinned bytes, never changed ------------------


def _invoiced(rule: str) -> StatementDoc:
    from billing.invoices import InvoiceDoc, InvoiceLine

    rate = Decimal("23") if rule == "domestic" else Decimal(0)
    vat = 2300 if rule == "domestic" else 0
    parties = {
        "partner": {
            "legal_name": "Dana Deals sp. z o.o.",
            "address": "ul. Długa 5\n00-001 Warszawa",
            "country": "PL",
            "vat_number": "PL5260250995" if rule != "none" else "",
            "entity": "business",
        },
        "merchant": {
            "legal_name": "Acme Shop GmbH",
            "address": "Hauptstraße 1\n10115 Berlin",
            "country": "DE",
            "vat_number": "DE136695976",
        },
    }
    lines = (InvoiceLine("Winter sale: cps commission", 10000, vat), InvoiceLine("Balance carried in", 0, 0))
    invoice = InvoiceDoc("SB-ACME-000007", rule, rate, lines, parties)
    return dataclasses.replace(_readable(lines=3), invoice=invoice, layout=2)


@pytest.mark.parametrize(
    ("which", "csv_sha", "pdf_sha"),
    [  # the SHA-256 layout 2 gave before statements had a language (issue 19, exports in five languages)
        (
            "readable",
            "d4142d2064be9e9bc447a963b1384449bc86476f1fde934b6df2146bf5d6f0a6",
            "77e61e7ef08f519cf777577e548860b05bdea6fc4dddf8a26e9c71a40585d587",
        ),
        (
            "open",
            "f05245d65526ea865cdf3a596ecbfd4ce1feeb62246448a21b7371f5cac46829",
            "6274f6d450d1f07bd105df70fecaa962185f82fd943c5797ce027941fa43cfa0",
        ),
        (
            "cafe",
            "cbd0bc9e924ce21d576e53e52eac32b6e43fb2f4d4cdbbb08b2ca3500e41d04f",
            "893bbacec682ff37914bbd7f6dd586003e2a3c1557cda4418b3acdedc3d3e06c",
        ),
        (
            "domestic",
            "1f65bf8eb358c8677f48f7d9ee35e18ef0f786aa24b390be94c6608904953995",
            "6a7445bf0bf7aca3ffba1292c3250af5d49d3a9fcfdf15eff71683122f6d7cba",
        ),
        (
            "reverse_charge",
            "32049de5d159390d11205b28dd400eed116692ed62b83de910c5464f39f78354",
            "1e8c9b346bae21a2512de791bc490d78696e08fabefa59ca48c1eda365467aa4",
        ),
        (
            "none",
            "e0887c99cb56de8522f9236933976ab00392544f66a955a5f21066b665716fbe",
            "b64abf27ecf03ba41961c05d606b2557218aaee1c11c716fc4a241e4495955ec",
        ),
    ],
)
def test_layout_2_keeps_its_bytes(which: str, csv_sha: str, pdf_sha: str) -> None:
    doc = {
        "readable": lambda: _readable(),
        "open": lambda: _readable(lines=2, closed=None),
        "cafe": lambda: _doc("Café 東京 🚀", lines=40),
    }.get(which, lambda: _invoiced(which))()
    doc = dataclasses.replace(doc, layout=2)
    assert (sha256_hex(statement_csv(doc)), sha256_hex(statement_pdf(doc))) == (csv_sha, pdf_sha)


# --- layout 3 (in the statement's language): pinned bytes, so a changed word, format or font is seen --------------


def _layout_3_exports(lang: str) -> bytes:
    """Every export of layout 3 in one language: a long statement, an open one, and invoices of each VAT rule."""
    docs = [_readable(lines=8), _readable(lines=2, closed=None)]
    docs += [dataclasses.replace(_invoiced(rule), layout=3) for rule in ("domestic", "reverse_charge", "none")]
    out = b""
    for doc in docs:
        doc = dataclasses.replace(doc, locale=lang)
        out += statement_csv(doc) + statement_pdf(doc)
    return out


@pytest.mark.parametrize(
    ("lang", "sha"),
    [  # layout 3 as first released (issue 19): changing them breaks the re-export of closed statements
        ("en", "bdda95b776a46105aa5cc125330742bd189b1df4ae9f5dc13af1f1170b85cd6a"),
        ("es", "3711bf68e6190555f5a507209b1652f6deb66036837f3509b59301c6c8e55c73"),
        ("fr", "3c9b0f6147f215cb95a6888917602e1d039d145763588f14b744e95b563a9160"),
        ("de", "e1dab80fa65b792ec789ab334a590a1ab1d4e0ee67d0a959a0ea02ebc5b4ea5b"),
        ("pl", "f8906a073c012e30b3db91e0877e48e18d15042585c7f0325c75735251ddb7ce"),
    ],
)
def test_layout_3_keeps_its_bytes(lang: str, sha: str) -> None:
    assert sha256_hex(_layout_3_exports(lang)) == sha


@pytest.mark.parametrize(
    ("lang", "words"),
    [
        ("pl", ("Zestawienie CM-2026-11-000042", "Wystawiono1 gru 2026", "Okres1 lis 2026 do 30 lis 2026", "167,56",
                "Faktura (samofakturowanie) SB-ACME-000007", "Dostawca (partner)Dana Deals sp. z o.o.", "ul. Długa 5",
                "Odwrotne obciążenie: VAT rozlicza nabywca", "strona 1 z")),
        ("de", ("Abrechnung CM-2026-11-000042", "Ausgestellt01.12.2026", "Zeitraum01.11.2026 bis 30.11.2026",
                "167,56", "Gutschrift SB-ACME-000007", "Leistender (Partner)", "Hauptstraße 1",
                "Steuerschuldnerschaft des Leistungsempfängers", "Seite 1 von")),
    ],
)  # fmt: skip
def test_layout_3_pdf_in_the_statements_language(lang: str, words: tuple[str, ...]) -> None:
    doc = dataclasses.replace(_invoiced("reverse_charge"), layout=3, locale=lang)
    text = _pdf_text(statement_pdf(dataclasses.replace(doc, lines=_readable(lines=8).lines), compress=False))
    for expected in words:
        assert expected in text, expected
    for english in ("Statement", "Issued", "Period", "Payment terms", "Self-billed", "Reverse charge", "page "):
        assert english not in text, english


@pytest.mark.parametrize(
    ("lang", "header"),
    [
        ("pl", ["Data (UTC)", "Odniesienie", "Rodzaj", "Oferta", "Opis", "Ilość", "Stawka", "Kwota", "Korekta"]),
        ("de", ["Datum (UTC)", "Referenz", "Art", "Angebot", "Beschreibung", "Menge", "Satz", "Betrag", "Korrektur"]),
        ("en", list(HEADER)),
    ],
)
def test_layout_3_csv_translates_titles_never_machine_values(lang: str, header: list[str]) -> None:
    english = dataclasses.replace(_invoiced("domestic"), layout=3)
    rows = list(csv.reader(io.StringIO(statement_csv(dataclasses.replace(english, locale=lang)).decode())))
    plain = list(csv.reader(io.StringIO(statement_csv(english).decode())))
    assert header in rows and len(rows) == len(plain)
    start = rows.index(header)
    for mine, theirs in zip(rows[start + 1 :], plain[start + 1 :], strict=True):
        if len(mine) == len(HEADER):  # a line: every column a machine value
            assert mine == theirs
    amounts = [row[1:] for row in rows if len(row) == 5]  # invoice lines: net, rate, VAT, gross
    assert amounts[1:] == [["100.00", "23%", "23.00", "123.00"], ["0.00", "23%", "0.00", "0.00"]]


def test_layout_3_prints_what_its_font_has_and_a_question_mark_for_the_rest() -> None:
    doc = dataclasses.replace(_doc("Łódź Café 東京 🚀", lines=1), locale="pl")
    text = _pdf_text(statement_pdf(doc, compress=False))
    assert "Łódź Café ?? ?" in text and "\ufffd" not in text
