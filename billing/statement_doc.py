"""A partner statement as the exports render it: plain data, and the helpers every rendering shares."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kernel.money import format_amount

if TYPE_CHECKING:
    from billing.invoices import InvoiceDoc

# A spreadsheet runs a cell starting with one of these as a formula (OWASP CSV injection);
# the full-width forms too, since some spreadsheets fold them to ASCII.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
LAYOUT = 2  # statements closed from now on; 1: those closed before lines were grouped (billing/exports_legacy.py)


@dataclass(frozen=True)
class StatementLine:
    occurred_at: dt.datetime
    event_id: str  # the line's reference: the event it comes from, or its group (cpc:<offer>:<partner>:<day>:...)
    kind: str
    offer: str
    description: str
    amount_minor: int
    adjustment: bool  # it belongs to an earlier period: a late line, or a reversal of an earlier period's sale
    quantity: int | None = None  # traffic lines: the events paid
    rate: str | None = None  # traffic lines: per event, or per 1000 views (cpm), in the line's own currency
    line_id: int | None = None  # not printed: the API's handle for the line's events (its detail)


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
    layout: int = LAYOUT
    merchant_address: str = ""
    partner_address: str = ""
    payment_terms: str = ""  # the merchant's own words; the minimum payout rule is always printed
    invoice: InvoiceDoc | None = None  # a self-billing merchant's invoice for it; None: printed as before

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

    @property
    def issued(self) -> str:
        """The issue date: the day it closed (UTC); an open statement is a draft."""
        return self.closed_at.astimezone(dt.UTC).date().isoformat() if self.closed_at else "not issued (open)"

    @property
    def terms(self) -> str:
        rule = (
            f"Payable once closed when the total reaches the minimum payout of "
            f"{format_amount(self.min_payout_minor, self.currency)} {self.currency}; a smaller balance is carried "
            "over to the next statement."
        )
        return f"{self.payment_terms.strip()} {rule}" if self.payment_terms.strip() else rule


def safe_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading apostrophe where it would start a formula."""
    return "'" + text if text.lstrip(" ").startswith(_FORMULA_STARTS) or text.startswith(_FORMULA_STARTS) else text


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def period(doc: StatementDoc) -> str:
    last = doc.period_end - dt.timedelta(days=1)
    return f"{doc.period_start.isoformat()} to {last.isoformat()}"


def totals(doc: StatementDoc) -> list[tuple[str, str]]:
    money = doc.currency
    return [
        ("Subtotal", format_amount(doc.subtotal_minor, money)),
        ("Adjustments", format_amount(doc.adjustments_minor, money)),
        ("Carried in", format_amount(doc.carried_in_minor, money)),
        ("Total", format_amount(doc.total_minor, money)),
        ("Minimum payout", format_amount(doc.min_payout_minor, money)),
        ("Payable", "yes" if doc.payable else "no, carried over"),
    ]


SELF_BILLED = "Self-billed invoice: issued by the customer (the merchant) in the name and on behalf of the supplier."


def invoice_parties(doc: StatementDoc) -> list[tuple[str, str]]:
    """Both parties' legal details as the invoice prints them: the partner supplies, the merchant buys."""
    assert doc.invoice is not None
    p, m = doc.invoice.parties["partner"], doc.invoice.parties["merchant"]
    rows = [("Self-billed invoice", doc.invoice.number)]
    rows += [("Supplier (partner)", p["legal_name"]), ("Supplier address", p["address"])]
    rows += [("Supplier country", p["country"]), ("Supplier VAT number", p["vat_number"] or "none")]
    rows += [("Customer (merchant)", m["legal_name"]), ("Customer address", m["address"])]
    rows += [("Customer country", m["country"]), ("Customer VAT number", m["vat_number"] or "none")]
    return rows


def invoice_totals(doc: StatementDoc) -> list[tuple[str, str]]:
    inv, money = doc.invoice, doc.currency
    assert inv is not None
    rows = [
        ("Net", format_amount(inv.net_minor, money)),
        (f"VAT {inv.rate}%" if inv.rule == "domestic" else "VAT", format_amount(inv.vat_minor, money)),
        ("Invoice total (paid)", format_amount(inv.gross_minor, money)),
    ]
    return rows


def invoice_notes(doc: StatementDoc) -> list[str]:
    assert doc.invoice is not None
    return [SELF_BILLED] + ([doc.invoice.mention] if doc.invoice.mention else [])


def latin1(text: str) -> str:
    """The core PDF fonts speak Latin-1: anything else is shown as '?', never a crash."""
    return text.encode("latin-1", "replace").decode("latin-1")
