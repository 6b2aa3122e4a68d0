"""A partner statement as CSV and PDF: pure functions of the statement, so a re-export gives the same bytes.

Statements closed before lines were grouped keep their own layout (billing/exports_legacy.py); the PDF
of the current layout is drawn in billing/statement_pdf.py.

The CSV of layout 3 on is in the statement's language for people's text only: the labels of the heading and
totals (first column), the lines' column titles, and sentences (payment terms, "Payable", the invoice's
mentions). Machine values never change with the language: dates ISO 8601 (UTC), amounts and rates plain
decimal strings with a point ("-1234.50"), quantities integers, references, kinds, statuses and "yes"/"no"
adjustment flags as codes. Layouts 1 and 2 are English.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from billing import exports_legacy
from billing.locales import N_, Words
from billing.statement_doc import (
    LAYOUT,
    StatementDoc,
    StatementLine,
    invoice_notes,
    invoice_parties,
    invoice_totals,
    issued,
    period,
    safe_cell,
    sha256_hex,
    status,
    terms,
    totals,
    vat_rate,
)
from kernel.money import format_amount

__all__ = ["LAYOUT", "StatementDoc", "StatementLine", "safe_cell", "sha256_hex", "statement_csv", "statement_pdf"]

# The lines' columns (titles in the statement's language from layout 3 on): date ISO 8601 UTC, reference,
# kind (a code), offer, description, quantity (integer), rate and amount (decimal strings), adjustment (yes/no).
HEADER = (
    N_("Date (UTC)"),
    N_("Reference"),
    N_("Kind"),
    N_("Offer"),
    N_("Description"),
    N_("Quantity"),
    N_("Rate"),
    N_("Amount"),
    N_("Adjustment"),
)
INVOICE_HEADER = (N_("Invoice line"), N_("Net"), N_("VAT rate"), N_("VAT"), N_("Gross"))


def statement_csv(doc: StatementDoc) -> bytes:
    """UTF-8 CSV; every text cell is safe against formula injection, amounts and quantities stay plain numbers."""
    if doc.layout == 1:
        return exports_legacy.statement_csv(doc)
    w = doc.words(human=False)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for label, value in _heading(doc, w):
        writer.writerow([label, safe_cell(value)])
    writer.writerow([])
    writer.writerow([w._(title) for title in HEADER])
    for line in doc.lines:
        writer.writerow(
            [
                line.occurred_at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                safe_cell(line.event_id),
                safe_cell(line.kind),
                safe_cell(line.offer),
                safe_cell(line.description),
                "" if line.quantity is None else str(line.quantity),
                line.rate or "",
                format_amount(line.amount_minor, doc.currency),
                "yes" if line.adjustment else "no",
            ]
        )
    writer.writerow([])
    for label, value in totals(doc, w):
        writer.writerow([label, value])
    if doc.invoice is not None:  # only for a self-billing merchant: every other statement keeps its bytes
        _invoice_csv(writer, doc, w)
    return out.getvalue().encode("utf-8")


def _invoice_csv(writer: Any, doc: StatementDoc, w: Words) -> None:
    assert doc.invoice is not None
    writer.writerow([])
    for label, value in invoice_parties(doc, w):
        writer.writerow([label, safe_cell(value)])
    writer.writerow([])
    writer.writerow([w._(title) for title in INVOICE_HEADER])
    rate = vat_rate(doc, w)
    for line in doc.invoice.lines:
        writer.writerow(
            [
                safe_cell(line.description),
                format_amount(line.net_minor, doc.currency),
                rate,
                format_amount(line.vat_minor, doc.currency),
                format_amount(line.net_minor + line.vat_minor, doc.currency),
            ]
        )
    writer.writerow([])
    for label, value in invoice_totals(doc, w):
        writer.writerow([label, value])
    for note in invoice_notes(doc, w):
        writer.writerow([safe_cell(note)])


def statement_pdf(doc: StatementDoc, compress: bool = True) -> bytes:
    """A4 PDF, deterministic bytes (see billing/statement_pdf.py)."""
    if doc.layout == 1:
        return exports_legacy.statement_pdf(doc, compress)
    from billing.statement_pdf import render  # fpdf costs ~0.25 s to import: ingest never draws a PDF

    return render(doc, compress)


def _heading(doc: StatementDoc, w: Words) -> list[tuple[str, str]]:
    rows = [(w._("Statement"), doc.number), (w._("Issued"), issued(doc, w)), (w._("Merchant"), doc.merchant)]
    if doc.merchant_address:
        rows.append((w._("Merchant address"), doc.merchant_address))
    rows.append((w._("Partner"), doc.partner))
    if doc.partner_address:
        rows.append((w._("Partner address"), doc.partner_address))
    rows += [(w._("Period"), period(doc, w)), (w._("Currency"), doc.currency), (w._("Status"), status(doc, w))]
    rows.append((w._("Payment terms"), terms(doc, w)))
    return rows
