"""A partner statement as the exports render it: plain data, and the helpers every rendering shares."""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from billing.locales import ENGLISH, N_, Words

if TYPE_CHECKING:
    from billing.invoices import InvoiceDoc

# A spreadsheet runs a cell starting with one of these as a formula (OWASP CSV injection);
# the full-width forms too, since some spreadsheets fold them to ASCII.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
# The layout of statements closed from now on. 3: in the statement's language (statements.locale, fixed when it
# closes; billing/locales.py); 2: English, closed before statements had a language; 1: closed before lines were
# grouped (billing/exports_legacy.py). A closed statement keeps its layout: its exports never change.
LAYOUT = 3


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
    locale: str = "en"  # its language (layout 3 on): one of billing.locales.SUPPORTED

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
        return issued(self, ENGLISH)

    @property
    def terms(self) -> str:
        return terms(self, ENGLISH)

    def words(self, human: bool) -> Words:
        """How its exports write: in its language from layout 3 on (human: the PDF), else English as before."""
        if self.layout < 3:
            return ENGLISH
        return Words(self.locale, human)


def issued(doc: StatementDoc, w: Words) -> str:
    """The issue date: the day it closed (UTC); an open statement is a draft."""
    return w.day(doc.closed_at.astimezone(dt.UTC).date()) if doc.closed_at else w._("not issued (open)")


def terms(doc: StatementDoc, w: Words) -> str:
    """The merchant's payment terms, then the minimum payout rule (always printed)."""
    rule = w._(
        "Payable once closed when the total reaches the minimum payout of %(amount)s; a smaller balance is carried "
        "over to the next statement."
    ) % {"amount": w.money(doc.min_payout_minor, doc.currency)}
    return f"{doc.payment_terms.strip()} {rule}" if doc.payment_terms.strip() else rule


def status(doc: StatementDoc, w: Words) -> str:
    """ "open" or "closed"; in the statement's language in its PDF (a CSV keeps the code)."""
    return w._({"open": N_("open"), "closed": N_("closed")}.get(doc.status, doc.status)) if w.human else doc.status


def safe_cell(text: str) -> str:
    """Text a spreadsheet shows as text: a leading apostrophe where it would start a formula."""
    return "'" + text if text.lstrip(" ").startswith(_FORMULA_STARTS) or text.startswith(_FORMULA_STARTS) else text


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def period(doc: StatementDoc, w: Words = ENGLISH) -> str:
    last = doc.period_end - dt.timedelta(days=1)
    return w._("%(start)s to %(end)s") % {"start": w.day(doc.period_start), "end": w.day(last)}


def totals(doc: StatementDoc, w: Words = ENGLISH) -> list[tuple[str, str]]:
    money = doc.currency
    return [
        (w._("Subtotal"), w.amount(doc.subtotal_minor, money)),
        (w._("Adjustments"), w.amount(doc.adjustments_minor, money)),
        (w._("Carried in"), w.amount(doc.carried_in_minor, money)),
        (w._("Total"), w.amount(doc.total_minor, money)),
        (w._("Minimum payout"), w.amount(doc.min_payout_minor, money)),
        (w._("Payable"), w._("yes") if doc.payable else w._("no, carried over")),
    ]


SELF_BILLED = N_(
    "Self-billed invoice: issued by the customer (the merchant) in the name and on behalf of the supplier."
)


def invoice_parties(doc: StatementDoc, w: Words = ENGLISH) -> list[tuple[str, str]]:
    """Both parties' legal details as the invoice prints them: the partner supplies, the merchant buys."""
    assert doc.invoice is not None
    p, m = doc.invoice.parties["partner"], doc.invoice.parties["merchant"]
    none = w._("none")
    rows = [(w._("Self-billed invoice"), doc.invoice.number)]
    rows += [(w._("Supplier (partner)"), p["legal_name"]), (w._("Supplier address"), p["address"])]
    rows += [(w._("Supplier country"), p["country"]), (w._("Supplier VAT number"), p["vat_number"] or none)]
    rows += [(w._("Customer (merchant)"), m["legal_name"]), (w._("Customer address"), m["address"])]
    rows += [(w._("Customer country"), m["country"]), (w._("Customer VAT number"), m["vat_number"] or none)]
    return rows


def vat_rate(doc: StatementDoc, w: Words = ENGLISH) -> str:
    """An invoice line's VAT rate: "23%" (domestic), else its rule: "reverse charge", "none"."""
    inv = doc.invoice
    assert inv is not None
    if inv.rule == "domestic":
        return f"{w.number(inv.rate)}%"
    rule = {"reverse_charge": N_("reverse charge"), "none": N_("none")}.get(inv.rule, inv.rule.replace("_", " "))
    return w._(rule) if w.human else inv.rule.replace("_", " ")


def invoice_totals(doc: StatementDoc, w: Words = ENGLISH) -> list[tuple[str, str]]:
    inv, money = doc.invoice, doc.currency
    assert inv is not None
    vat = w._("VAT %(rate)s") % {"rate": f"{w.number(inv.rate)}%"} if inv.rule == "domestic" else w._("VAT")
    rows = [
        (w._("Net"), w.amount(inv.net_minor, money)),
        (vat, w.amount(inv.vat_minor, money)),
        (w._("Invoice total (paid)"), w.amount(inv.gross_minor, money)),
    ]
    return rows


def invoice_notes(doc: StatementDoc, w: Words = ENGLISH) -> list[str]:
    """The self-billing mention, then the VAT mention (reverse charge, or no VAT), in the statement's language."""
    assert doc.invoice is not None
    return [w._(SELF_BILLED)] + ([w._(doc.invoice.mention)] if doc.invoice.mention else [])


def latin1(text: str) -> str:
    """The core PDF fonts speak Latin-1: anything else is shown as '?', never a crash."""
    return text.encode("latin-1", "replace").decode("latin-1")


def printable(covered: frozenset[int], text: str) -> str:
    """Text in a font that has these characters: any other (a CJK name, an emoji) is shown as '?', never a crash."""
    return "".join(ch if ord(ch) in covered or ch in "\n" else "?" for ch in text)
