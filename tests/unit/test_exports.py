"""Statement exports: no cell a spreadsheet would run, numbers stay numbers, the same bytes every time."""

from __future__ import annotations

import csv
import datetime as dt
import io
import subprocess
import sys
from decimal import Decimal

import pytest

from billing.exports import StatementDoc, StatementLine, safe_cell, sha256_hex, statement_csv, statement_pdf

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
    text_cells = [cell for row in rows for i, cell in enumerate(row) if not (len(row) == 7 and i == 5)]
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
    header = rows.index(["Date (UTC)", "Event", "Kind", "Offer", "Description", "Amount", "Adjustment"])
    amounts = [Decimal(row[5]) for row in rows[header + 1 : header + 1 + len(doc.lines)]]
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
    assert [row[5] for row in rows if len(row) == 7][1] == shown


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
    raw = statement_pdf(_doc("Acme"), compress=False)
    assert b"CM-2026-11-000001" in raw and b"Acme" in raw and b"12.34" in raw


def test_csv_is_deterministic() -> None:
    assert statement_csv(_doc()) == statement_csv(_doc())
