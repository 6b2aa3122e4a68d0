"""A partner statement as CSV and PDF: pure functions of the statement, so a re-export gives the same bytes.

Statements closed before lines were grouped keep their own layout (billing/exports_legacy.py); the PDF
of the current layout is drawn in billing/statement_pdf.py.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

from billing import exports_legacy
from billing.statement_doc import (
    LAYOUT,
    StatementDoc,
    StatementLine,
    invoice_notes,
    invoice_parties,
    invoice_totals,
    period,
    safe_cell,
    sha256_hex,
    totals,
)
from billing.statement_pdf import render as _render_pdf
from kernel.money import format_amount

__all__ = ["LAYOUT", "StatementDoc", "StatementLine", "safe_cell", "sha256_hex", "statement_csv", "statement_pdf"]

HEADER = ("Date (UTC)", "Reference", "Kind", "Offer", "Description", "Quantity", "Rate", "Amount", "Adjustment")
INVOICE_HEADER = ("Invoice line", "Net", "VAT rate", "VAT", "Gross")


def statement_csv(doc: StatementDoc) -> bytes:
    """UTF-8 CSV; every text cell is safe against formula injection, amounts and quantities stay plain numbers."""
    if doc.layout == 1:
        return exports_legacy.statement_csv(doc)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for label, value in _heading(doc):
        writer.writerow([label, safe_cell(value)])
    writer.writerow([])
    writer.writerow(HEADER)
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
    for label, value in totals(doc):
        writer.writerow([label, value])
    if doc.invoice is not None:  # only for a self-billing merchant: every other statement keeps its bytes
        _invoice_csv(writer, doc)
    return out.getvalue().encode("utf-8")


def _invoice_csv(writer: Any, doc: StatementDoc) -> None:
    assert doc.invoice is not None
    writer.writerow([])
    for label, value in invoice_parties(doc):
        writer.writerow([label, safe_cell(value)])
    writer.writerow([])
    writer.writerow(INVOICE_HEADER)
    rate = f"{doc.invoice.rate}%" if doc.invoice.rule == "domestic" else doc.invoice.rule.replace("_", " ")
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
    for label, value in invoice_totals(doc):
        writer.writerow([label, value])
    for note in invoice_notes(doc):
        writer.writerow([safe_cell(note)])


def statement_pdf(doc: StatementDoc, compress: bool = True) -> bytes:
    """A4 PDF, deterministic bytes (see billing/statement_pdf.py)."""
    if doc.layout == 1:
        return exports_legacy.statement_pdf(doc, compress)
    return _render_pdf(doc, compress)


def _heading(doc: StatementDoc) -> list[tuple[str, str]]:
    rows = [("Statement", doc.number), ("Issued", doc.issued), ("Merchant", doc.merchant)]
    if doc.merchant_address:
        rows.append(("Merchant address", doc.merchant_address))
    rows.append(("Partner", doc.partner))
    if doc.partner_address:
        rows.append(("Partner address", doc.partner_address))
    rows += [("Period", period(doc)), ("Currency", doc.currency), ("Status", doc.status)]
    rows.append(("Payment terms", doc.terms))
    return rows
