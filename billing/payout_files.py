"""Payout files, pure: a SEPA credit transfer (ISO 20022 pain.001, made with sepaxml and checked against its
schema) and a PayPal Payouts batch CSV. Plain data in, bytes out; the same input gives the same bytes (the
message id, creation time and payment information id come from the batch, not from a clock or a random)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sepaxml import SepaTransfer
from sepaxml.validation import ValidationError, try_valid_xml

from kernel.money import format_amount

SEPA_SCHEMAS = ("pain.001.001.09", "pain.001.001.03")
DEFAULT_SEPA_SCHEMA = "pain.001.001.09"
PAYPAL_SCHEMA = "paypal-payouts-csv"
# PayPal Payouts web upload: no header row; one payout per row, one currency per file.
PAYPAL_COLUMNS = (
    "Recipient identifier",
    "Payment amount",
    "Currency",
    "Customer ID",
    "Note to recipient",
    "Recipient wallet",
)


class PayoutFileError(ValueError):
    """The file cannot be made (the bank details or amounts do not fit the format)."""


@dataclass(frozen=True)
class Payer:
    name: str
    iban: str | None
    bic: str | None


@dataclass(frozen=True)
class Payment:
    reference: str  # the statement number: the transfer's end-to-end id, PayPal's Customer ID
    name: str  # the partner's legal name
    amount_minor: int
    currency: str
    note: str  # remittance information / note to recipient
    iban: str | None = None
    bic: str | None = None
    paypal_email: str | None = None


def sepa(
    batch_id: str,
    created: dt.datetime,
    execution: dt.date,
    payer: Payer,
    payments: list[Payment],
    schema: str = DEFAULT_SEPA_SCHEMA,
) -> bytes:
    """A pain.001 credit transfer of `payments` (EUR) from the payer's account, valid against `schema`."""
    if schema not in SEPA_SCHEMAS:
        raise PayoutFileError(f"unknown SEPA schema {schema!r}; use one of {', '.join(SEPA_SCHEMAS)}")
    if not payer.iban:
        raise PayoutFileError("the merchant has no payout IBAN: set it first (payout settings)")
    config = {"name": payer.name, "IBAN": payer.iban, "batch": True, "currency": "EUR"}
    if payer.bic:
        config["BIC"] = payer.bic
    transfer = SepaTransfer(config, schema=schema, clean=True)
    for p in payments:
        if p.currency != "EUR" or not p.iban:
            raise PayoutFileError(f"{p.reference}: a SEPA transfer is EUR to an IBAN")
        payment = {
            "name": p.name,
            "IBAN": p.iban,
            "amount": p.amount_minor,
            "execution_date": execution,
            "description": p.note,
            "endtoend_id": p.reference,
        }
        if p.bic:
            payment["BIC"] = p.bic
        transfer.add_payment(payment)
    raw = transfer.export(validate=False)
    data = _pin(raw, schema, batch_id, created)
    try:
        try_valid_xml(data, schema)
    except ValidationError as exc:
        raise PayoutFileError(f"the SEPA file does not validate against {schema}: {exc.__cause__}") from exc
    return data


def _pin(raw: bytes, schema: str, batch_id: str, created: dt.datetime) -> bytes:
    """Replace sepaxml's clock and random ids by the batch's own, so re-rendering gives the same bytes."""
    ns = "urn:iso:std:iso:20022:tech:xsd:" + schema
    ET.register_namespace("", ns)
    ET.register_namespace("xsi", "http://www.w3.org/2001/XMLSchema-instance")
    root = ET.fromstring(raw)
    q = f"{{{ns}}}"
    header = root.find(f"{q}CstmrCdtTrfInitn/{q}GrpHdr")
    assert header is not None
    header.find(f"{q}MsgId").text = batch_id  # type: ignore[union-attr]
    header.find(f"{q}CreDtTm").text = created.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")  # type: ignore[union-attr]
    for n, info in enumerate(root.iter(f"{q}PmtInfId"), start=1):
        info.text = f"{batch_id}-{n}"
    return b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, "utf-8")


def paypal(payments: list[Payment]) -> bytes:
    """A PayPal Payouts batch CSV: recipient e-mail, amount (major units, '.' decimal point), currency,
    customer id (the statement number), note, wallet PAYPAL. No header row, as PayPal's upload expects."""
    currencies = {p.currency for p in payments}
    if len(currencies) > 1:
        raise PayoutFileError("a PayPal payout file holds one currency")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    for p in payments:
        if not p.paypal_email:
            raise PayoutFileError(f"{p.reference}: no PayPal account")
        writer.writerow(
            [p.paypal_email, format_amount(p.amount_minor, p.currency), p.currency, p.reference, p.note[:400], "PAYPAL"]
        )
    return out.getvalue().encode()
