"""A statement as an A4 PDF: issue date, both parties with their addresses, payment terms, every line wrapped
(an order id or an offer name is never cut), totals, and "page n of m" on every page; deterministic bytes."""

from __future__ import annotations

import datetime as dt

from fpdf import FPDF
from fpdf.enums import WrapMode

from billing.statement_doc import (
    EPOCH,
    StatementDoc,
    invoice_notes,
    invoice_parties,
    invoice_totals,
    latin1,
    period,
    totals,
)
from kernel.money import format_amount

_WIDTHS = (20, 17, 38, 83, 14, 18)  # date, kind, offer, description, quantity, amount: 190 mm
_TITLES = ("Date", "Kind", "Offer", "Description", "Qty", "Amount")


class _Page(FPDF):
    """Every page's footer: the statement number and the page of how many."""

    number = ""

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font("Helvetica", "", 8)
        self.cell(0, 6, latin1(f"Statement {self.number} - page {self.page_no()} of {{nb}}"), align="C")


def render(doc: StatementDoc, compress: bool = True) -> bytes:
    pdf = _Page(orientation="P", unit="mm", format="A4")
    pdf.number = doc.number
    pdf.set_compression(compress)
    pdf.set_creation_date(doc.closed_at or EPOCH)
    pdf.set_title(latin1(f"Statement {doc.number}"))
    pdf.set_author(latin1(doc.merchant))
    pdf.set_creator("Clickmint")
    pdf.set_producer("Clickmint")
    pdf.file_id = lambda: ""  # type: ignore[method-assign]  # no random /ID: same statement, same bytes
    pdf.alias_nb_pages()
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 9, latin1(f"Statement {doc.number}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 10)
    _parties(pdf, doc)
    for label, value in (
        ("Issued", doc.issued),
        ("Period", period(doc)),
        ("Currency", doc.currency),
        ("Status", doc.status),
        ("Payment terms", doc.terms),
    ):
        pdf.set_font("Helvetica", "B", 10)
        pdf.cell(32, 6, label)
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(158, 6, latin1(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "", 8)
    with pdf.table(
        col_widths=_WIDTHS,
        width=sum(_WIDTHS),
        text_align=("LEFT", "LEFT", "LEFT", "LEFT", "RIGHT", "RIGHT"),
        wrapmode=WrapMode.WORD,  # a word longer than its cell (an order id) breaks across lines, never cut
        borders_layout="HORIZONTAL_LINES",
        line_height=4,
        repeat_headings=1,
    ) as table:
        heading = table.row()
        for title in _TITLES:
            heading.cell(title)
        for line in doc.lines:
            row = table.row()
            for text in (
                line.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%d"),
                line.kind + (" (adj.)" if line.adjustment else ""),
                line.offer,
                line.description,
                "" if line.quantity is None else str(line.quantity),
                format_amount(line.amount_minor, doc.currency),
            ):
                row.cell(latin1(text))
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    for label, value in totals(doc):
        pdf.cell(160, 6, label, align="R")
        pdf.cell(30, 6, latin1(value), align="R", new_x="LMARGIN", new_y="NEXT")
    if doc.invoice is not None:  # only for a self-billing merchant: every other statement keeps its bytes
        _invoice(pdf, doc)
    return bytes(pdf.output())


def _invoice(pdf: FPDF, doc: StatementDoc) -> None:
    """The self-billed invoice: both parties' legal details, its lines with their VAT, totals, mentions."""
    assert doc.invoice is not None
    pdf.ln(6)
    pdf.set_font("Helvetica", "B", 13)
    pdf.multi_cell(0, 8, latin1(f"Self-billed invoice {doc.invoice.number}"), new_x="LMARGIN", new_y="NEXT")
    for label, value in invoice_parties(doc)[1:]:
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(45, 5, label)
        pdf.set_font("Helvetica", "", 9)
        pdf.multi_cell(145, 5, latin1(value or "-"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("Helvetica", "", 8)
    rate = f"{doc.invoice.rate}%" if doc.invoice.rule == "domestic" else doc.invoice.rule.replace("_", " ")
    with pdf.table(
        col_widths=(100, 25, 20, 20, 25),
        width=190,
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        wrapmode=WrapMode.WORD,
        borders_layout="HORIZONTAL_LINES",
        line_height=4,
    ) as table:
        heading = table.row()
        for title in ("Invoice line", "Net", "VAT rate", "VAT", "Gross"):
            heading.cell(title)
        for line in doc.invoice.lines:
            row = table.row()
            for text in (
                line.description,
                format_amount(line.net_minor, doc.currency),
                rate,
                format_amount(line.vat_minor, doc.currency),
                format_amount(line.net_minor + line.vat_minor, doc.currency),
            ):
                row.cell(latin1(text))
    pdf.ln(3)
    pdf.set_font("Helvetica", "B", 10)
    for label, value in invoice_totals(doc):
        pdf.cell(160, 6, latin1(label), align="R")
        pdf.cell(30, 6, latin1(value), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    for note in invoice_notes(doc):
        pdf.multi_cell(0, 5, latin1(note), new_x="LMARGIN", new_y="NEXT")


def _parties(pdf: FPDF, doc: StatementDoc) -> None:
    """Merchant and partner side by side, each with its address where known."""
    top = bottom = pdf.get_y() + 2
    for x, title, name, address in (
        (10, "From (merchant)", doc.merchant, doc.merchant_address),
        (105, "To (partner)", doc.partner, doc.partner_address),
    ):
        pdf.set_xy(x, top)
        pdf.set_font("Helvetica", "B", 9)
        pdf.cell(95, 5, title, new_x="LEFT", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)
        pdf.multi_cell(92, 5, latin1("\n".join(part for part in (name, address) if part)), new_x="LEFT", new_y="NEXT")
        bottom = max(pdf.get_y(), bottom)
    pdf.set_xy(10, bottom + 3)
