"""A partner statement as CSV and PDF: pure functions of the statement, so a re-export gives the same bytes."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
from dataclasses import dataclass

from fpdf import FPDF

from billing.money import format_amount

# A spreadsheet runs a cell starting with one of these as a formula (OWASP CSV injection);
# the full-width forms too, since some spreadsheets fold them to ASCII.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class StatementLine:
    occurred_at: dt.datetime
    event_id: str  # the event the line comes from, or a settlement key (cpm)
    kind: str
    offer: str
    description: str
    amount_minor: int
    adjustment: bool  # a late line or a reversal belonging to an earlier, closed period


@dataclass(frozen=True)
class StatementDoc:
    number: str
    merchant: str
    partner: str
    period_start: dt.date
    period_end: dt.date  # exclusive
    currency: str
    status: str
    closed_at: dt.datetime | None
    carried_in_minor: int
    lines: tuple[StatementLine, ...]
    min_payout_minor: int

    @property
    def subtotal_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines if not line.adjustment)

    @property
    def adjustments_minor(self) -> int:
        return sum(line.amount_minor for line in self.lines if line.adjustment)

    @property
    def total_minor(self) -> int:
        return self.carried_in_minor + self.subtotal_minor + self.adjustments_minor

    @property
    def payable(self) -> bool:
        return self.total_minor > 0 and self.total_minor >= self.min_payout_minor

    @property
    def carried_out_minor(self) -> int:
        return 0 if self.payable else self.total_minor


def safe_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading apostrophe where it would start a formula."""
    return "'" + text if text.lstrip(" ").startswith(_FORMULA_STARTS) or text.startswith(_FORMULA_STARTS) else text


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _period(doc: StatementDoc) -> str:
    last = doc.period_end - dt.timedelta(days=1)
    return f"{doc.period_start.isoformat()} to {last.isoformat()}"


def _totals(doc: StatementDoc) -> list[tuple[str, str]]:
    money = doc.currency
    return [
        ("Subtotal", format_amount(doc.subtotal_minor, money)),
        ("Adjustments", format_amount(doc.adjustments_minor, money)),
        ("Carried in", format_amount(doc.carried_in_minor, money)),
        ("Total", format_amount(doc.total_minor, money)),
        ("Minimum payout", format_amount(doc.min_payout_minor, money)),
        ("Payable", "yes" if doc.payable else "no, carried over"),
    ]


def statement_csv(doc: StatementDoc) -> bytes:
    """UTF-8 CSV; every text cell is safe against formula injection, amounts stay plain numbers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for label, value in (
        ("Statement", doc.number),
        ("Merchant", doc.merchant),
        ("Partner", doc.partner),
        ("Period", _period(doc)),
        ("Currency", doc.currency),
        ("Status", doc.status),
    ):
        writer.writerow([label, safe_cell(value)])
    writer.writerow([])
    writer.writerow(["Date (UTC)", "Event", "Kind", "Offer", "Description", "Amount", "Adjustment"])
    for line in doc.lines:
        writer.writerow(
            [
                line.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                safe_cell(line.event_id),
                safe_cell(line.kind),
                safe_cell(line.offer),
                safe_cell(line.description),
                format_amount(line.amount_minor, doc.currency),
                "yes" if line.adjustment else "no",
            ]
        )
    writer.writerow([])
    for label, value in _totals(doc):
        writer.writerow([label, value])
    return out.getvalue().encode("utf-8")


def _latin1(text: str) -> str:
    """The core PDF fonts speak Latin-1: anything else is shown as '?', never a crash."""
    return text.encode("latin-1", "replace").decode("latin-1")


def _fit(pdf: FPDF, text: str, width: int) -> str:
    text = _latin1(text)
    if pdf.get_string_width(text) <= width - 2:
        return text
    while text and pdf.get_string_width(text + "...") > width - 2:
        text = text[:-1]
    return text + "..."


def statement_pdf(doc: StatementDoc, compress: bool = True) -> bytes:
    """A4 PDF with the merchant, partner, period, lines and totals; deterministic bytes."""
    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.set_compression(compress)
    pdf.set_creation_date(doc.closed_at or _EPOCH)
    pdf.set_title(_latin1(f"Statement {doc.number}"))
    pdf.set_author(_latin1(doc.merchant))
    pdf.set_creator("Clickmint")
    pdf.set_producer("Clickmint")
    pdf.file_id = lambda: ""  # type: ignore[method-assign]  # no random /ID: same statement, same bytes
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _fit(pdf, f"Statement {doc.number}", 190), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    for label, value in (
        ("Merchant", doc.merchant),
        ("Partner", doc.partner),
        ("Period", _period(doc)),
        ("Currency", doc.currency),
        ("Status", doc.status),
    ):
        pdf.cell(30, 6, label)
        pdf.cell(0, 6, _fit(pdf, value, 160), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    widths = (24, 22, 40, 74, 30)
    pdf.set_font("Helvetica", "B", 9)
    for title, width in zip(("Date", "Kind", "Offer", "Description", "Amount"), widths, strict=True):
        pdf.cell(width, 7, title, border="B", align="R" if title == "Amount" else "L")
    pdf.ln()
    pdf.set_font("Helvetica", "", 8)
    for line in doc.lines:
        kind = line.kind + (" (adj.)" if line.adjustment else "")
        cells = (
            line.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%d"),
            kind,
            line.offer,
            line.description,
            format_amount(line.amount_minor, doc.currency),
        )
        for index, (text, width) in enumerate(zip(cells, widths, strict=True)):
            pdf.cell(width, 6, _fit(pdf, text, width), align="R" if index == 4 else "L")
        pdf.ln()
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    for label, value in _totals(doc):
        pdf.cell(160, 6, label, align="R")
        pdf.cell(30, 6, _latin1(value), align="R", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
