"""A statement as an A4 PDF: issue date, both parties with their addresses, payment terms, every line wrapped
(an order id or an offer name is never cut), totals, and "page n of m" on every page; deterministic bytes.

Layout 3 on: in the statement's language, money, numbers and dates written for it (billing/locales.py), in
DejaVu Sans (billing/fonts/: a fixed subset with Latin-1 and Latin Extended-A, so Polish prints; never change
those files, a closed statement's PDF is pinned by its SHA-256). Layout 2: English in the core Helvetica, as
it was."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from fontTools.ttLib import TTFont
from fpdf import FPDF
from fpdf.enums import WrapMode

from billing.locales import N_, Words
from billing.statement_doc import (
    EPOCH,
    StatementDoc,
    invoice_notes,
    invoice_parties,
    invoice_totals,
    issued,
    latin1,
    period,
    printable,
    status,
    terms,
    totals,
    vat_rate,
)

_WIDTHS = (20, 17, 38, 83, 14, 18)  # date, kind, offer, description, quantity, amount: 190 mm
_TITLES = (N_("Date"), N_("Kind"), N_("Offer"), N_("Description"), N_("Qty"), N_("Amount"))
_FONTS = Path(__file__).parent / "fonts"
_COVERED = frozenset(TTFont(_FONTS / "DejaVuSans.ttf").getBestCmap()) & frozenset(
    TTFont(_FONTS / "DejaVuSans-Bold.ttf").getBestCmap()
)


class _Page(FPDF):
    """Every page's footer: the statement number and the page of how many."""

    number = ""
    words = Words()
    face = "Helvetica"

    def shown(self, value: str) -> str:
        return latin1(value) if self.face == "Helvetica" else printable(_COVERED, value)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.face, "", 8)
        line = self.words._("Statement %(number)s - page %(page)s of %(pages)s")
        self.cell(0, 6, self.shown(line % {"number": self.number, "page": self.page_no(), "pages": "{nb}"}), align="C")


def render(doc: StatementDoc, compress: bool = True) -> bytes:
    w = doc.words(human=True)
    pdf = _Page(orientation="P", unit="mm", format="A4")
    pdf.number = doc.number
    pdf.words = w
    if doc.layout >= 3:
        pdf.add_font("DejaVu", "", _FONTS / "DejaVuSans.ttf")
        pdf.add_font("DejaVu", "B", _FONTS / "DejaVuSans-Bold.ttf")
        pdf.face = "DejaVu"
    face, t = pdf.face, pdf.shown
    pdf.set_compression(compress)
    pdf.set_creation_date(doc.closed_at or EPOCH)
    pdf.set_title(t(w._("Statement %(number)s") % {"number": doc.number}))
    pdf.set_author(t(doc.merchant))
    pdf.set_creator("Clickmint")
    pdf.set_producer("Clickmint")
    pdf.file_id = lambda: ""  # type: ignore[method-assign]  # no random /ID: same statement, same bytes
    pdf.alias_nb_pages()
    pdf.set_auto_page_break(auto=True, margin=18)
    pdf.add_page()
    pdf.set_font(face, "B", 16)
    pdf.multi_cell(0, 9, t(w._("Statement %(number)s") % {"number": doc.number}), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(face, "", 10)
    _parties(pdf, doc, w, t)
    fields = (
        (w._("Issued"), issued(doc, w)),
        (w._("Period"), period(doc, w)),
        (w._("Currency"), doc.currency),
        (w._("Status"), status(doc, w)),
        (w._("Payment terms"), terms(doc, w)),
    )
    pdf.set_font(face, "B", 10)
    width = _label_width(pdf, [label for label, _ in fields], 32)
    for label, value in fields:
        pdf.set_font(face, "B", 10)
        pdf.cell(width, 6, t(label))
        pdf.set_font(face, "", 10)
        pdf.multi_cell(190 - width, 6, t(value), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font(face, "", 8)
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
            heading.cell(t(w._(title)))
        adjusted = " " + w._("(adj.)")
        for line in doc.lines:
            row = table.row()
            for text in (
                w.day(line.occurred_at.astimezone(dt.UTC).date()),
                line.kind + (adjusted if line.adjustment else ""),
                line.offer,
                line.description,
                "" if line.quantity is None else w.number(line.quantity),
                w.amount(line.amount_minor, doc.currency),
            ):
                row.cell(t(text))
    pdf.ln(4)
    pdf.set_font(face, "B", 10)
    for label, value in totals(doc, w):
        pdf.cell(160, 6, t(label), align="R")
        pdf.cell(30, 6, t(value), align="R", new_x="LMARGIN", new_y="NEXT")
    if doc.invoice is not None:  # only for a self-billing merchant: every other statement keeps its bytes
        _invoice(pdf, doc, w, t)
    return bytes(pdf.output())


def _invoice(pdf: _Page, doc: StatementDoc, w: Words, t: Callable[[str], str]) -> None:
    """The self-billed invoice: both parties' legal details, its lines with their VAT, totals, mentions."""
    assert doc.invoice is not None
    face = pdf.face
    pdf.ln(6)
    pdf.set_font(face, "B", 13)
    title = w._("Self-billed invoice %(number)s") % {"number": doc.invoice.number}
    pdf.multi_cell(0, 8, t(title), new_x="LMARGIN", new_y="NEXT")
    parties = invoice_parties(doc, w)[1:]
    pdf.set_font(face, "B", 9)
    width = _label_width(pdf, [label for label, _ in parties], 45)
    for label, value in parties:
        pdf.set_font(face, "B", 9)
        pdf.cell(width, 5, t(label))
        pdf.set_font(face, "", 9)
        pdf.multi_cell(190 - width, 5, t(value or "-"), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font(face, "", 8)
    rate = vat_rate(doc, w)
    with pdf.table(
        col_widths=(100, 25, 20, 20, 25),
        width=190,
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT", "RIGHT"),
        wrapmode=WrapMode.WORD,
        borders_layout="HORIZONTAL_LINES",
        line_height=4,
    ) as table:
        heading = table.row()
        for title in (N_("Invoice line"), N_("Net"), N_("VAT rate"), N_("VAT"), N_("Gross")):
            heading.cell(t(w._(title)))
        for line in doc.invoice.lines:
            row = table.row()
            for text in (
                line.description,
                w.amount(line.net_minor, doc.currency),
                rate,
                w.amount(line.vat_minor, doc.currency),
                w.amount(line.net_minor + line.vat_minor, doc.currency),
            ):
                row.cell(t(text))
    pdf.ln(3)
    pdf.set_font(face, "B", 10)
    for label, value in invoice_totals(doc, w):
        pdf.cell(160, 6, t(label), align="R")
        pdf.cell(30, 6, t(value), align="R", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(face, "", 9)
    for note in invoice_notes(doc, w):
        pdf.multi_cell(0, 5, t(note), new_x="LMARGIN", new_y="NEXT")


def _label_width(pdf: _Page, labels: list[str], width: int) -> float:
    """Layout 3: a labels column as wide as its longest label in this language (never narrower than layout 2's
    fixed width, never over half the page); layout 2 keeps its fixed width, so its bytes."""
    if pdf.face == "Helvetica":
        return width
    return min(95.0, max([float(width)] + [pdf.get_string_width(pdf.shown(label)) + 3 for label in labels]))


def _parties(pdf: _Page, doc: StatementDoc, w: Words, t: Callable[[str], str]) -> None:
    """Merchant and partner side by side, each with its address where known."""
    face = pdf.face
    top = bottom = pdf.get_y() + 2
    for x, title, name, address in (
        (10, w._("From (merchant)"), doc.merchant, doc.merchant_address),
        (105, w._("To (partner)"), doc.partner, doc.partner_address),
    ):
        pdf.set_xy(x, top)
        pdf.set_font(face, "B", 9)
        pdf.cell(95, 5, t(title), new_x="LEFT", new_y="NEXT")
        pdf.set_font(face, "", 10)
        pdf.multi_cell(92, 5, t("\n".join(part for part in (name, address) if part)), new_x="LEFT", new_y="NEXT")
        bottom = max(pdf.get_y(), bottom)
    pdf.set_xy(10, bottom + 3)
