"""Statements closed before lines were grouped (layout 1), rendered exactly as they were then: a closed
statement's export is pinned by its SHA-256, so this code must keep giving the same bytes."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import TYPE_CHECKING

from billing.statement_doc import EPOCH as _EPOCH
from billing.statement_doc import StatementDoc, safe_cell
from billing.statement_doc import latin1 as _latin1
from billing.statement_doc import period as _period
from billing.statement_doc import totals as _totals
from kernel.money import format_amount

if TYPE_CHECKING:
    from fpdf import FPDF


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


def _fit(pdf: FPDF, text: str, width: int) -> str:
    text = _latin1(text)
    if pdf.get_string_width(text) <= width - 2:
        return text
    while text and pdf.get_string_width(text + "...") > width - 2:
        text = text[:-1]
    return text + "..."


def statement_pdf(doc: StatementDoc, compress: bool = True) -> bytes:
    """A4 PDF with the merchant, partner, period, lines and totals; deterministic bytes."""
    from fpdf import FPDF  # imported when a PDF is drawn, not by every process that reads statements

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
