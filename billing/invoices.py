"""Self-billed invoices: when a merchant self-bills, each payable statement it closes is also an invoice the
merchant issues on its partner's behalf. Numbers are gap-free per merchant (the sequence row is locked in the
closing transaction); VAT follows the merchant's rule, one rounding per line, integer minor units.

VAT rule (vat_rule): an individual (or a partner without tax details) charges none; a business with a VAT
number of another EU member state than the merchant's: reverse charge (no VAT, the mention printed); any other
business: the merchant's domestic rate. What the invoice prints is fixed when it is issued (both parties'
legal details, the partner's VAT number in full: it is a legal document that must re-export byte for byte).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import orjson

from billing.locales import N_, Words
from kernel.money import round_minor
from kernel.payout_details import EU_COUNTRIES, vat_country
from kernel.sealed import Sealer

# The mentions are English here; an export prints them in its statement's language (billing/locales.py).
REVERSE_CHARGE = N_(
    "Reverse charge: VAT to be accounted for by the recipient (Article 196, Council Directive 2006/112/EC)."
)
NO_VAT = N_("No VAT charged: the supplier is not a taxable person for VAT.")


class InvoiceError(ValueError):
    """An invoice that cannot be issued (e.g. the partner's VAT number cannot be read without the secret key)."""


@dataclass(frozen=True)
class InvoiceLine:
    description: str
    net_minor: int
    vat_minor: int


@dataclass(frozen=True)
class InvoiceDoc:
    number: str
    rule: str  # domestic | reverse_charge | none
    rate: Decimal  # percent
    lines: tuple[InvoiceLine, ...]
    parties: dict[str, Any]

    @property
    def net_minor(self) -> int:
        return sum(line.net_minor for line in self.lines)

    @property
    def vat_minor(self) -> int:
        return sum(line.vat_minor for line in self.lines)

    @property
    def gross_minor(self) -> int:
        return self.net_minor + self.vat_minor

    @property
    def mention(self) -> str:
        return {"reverse_charge": REVERSE_CHARGE, "none": NO_VAT}.get(self.rule, "")


def vat_rule(merchant_country: str | None, entity: str | None, partner_country: str | None, has_vat: bool) -> str:
    """Which VAT applies to a partner's supply to the merchant (see the module docstring)."""
    if entity != "business":
        return "none"
    if (
        has_vat
        and merchant_country in EU_COUNTRIES
        and partner_country in EU_COUNTRIES
        and partner_country != merchant_country
    ):
        return "reverse_charge"
    return "domestic"


def lines_with_vat(
    nets: Sequence[tuple[str, int]], rule: str, rate: Decimal, rounding: str = "half_even"
) -> tuple[InvoiceLine, ...]:
    """Each line's VAT rounded once, from its own net; the totals are the sums of the lines."""
    out = []
    for description, net in nets:
        vat = round_minor(Decimal(net) * rate / 100, rounding) if rule == "domestic" else 0
        out.append(InvoiceLine(description, net, vat))
    return tuple(out)


_TO_ISSUE = """
SELECT s.id, s.number, s.locale, s.merchant_id, s.partner_id, s.currency, s.total_minor, s.carried_in_minor,
       s.period_start,
       m.slug, m.name AS merchant_name, m.legal_name AS merchant_legal, m.address AS merchant_address,
       m.country AS merchant_country, m.vat_number AS merchant_vat, m.vat_rate, m.rounding,
       p.name AS partner_name, d.legal_name AS partner_legal, d.address AS partner_address,
       d.country AS partner_country, d.entity, d.vat_sealed
FROM statements s
JOIN merchants m ON m.id = s.merchant_id AND m.self_billing
JOIN partners p ON p.id = s.partner_id
LEFT JOIN partner_payout_details d ON d.merchant_id = s.merchant_id AND d.partner_id = s.partner_id
WHERE s.id = ANY($1::bigint[]) AND s.status = 'closed' AND s.payable
  AND NOT EXISTS (SELECT 1 FROM self_billed_invoices i WHERE i.statement_id = s.id)
ORDER BY s.merchant_id, s.period_start, s.number"""


async def issue(conn: asyncpg.Connection, statement_ids: list[int], sealer: Sealer | None) -> int:
    """Issue the invoices of these just-closed statements (inside the closing transaction); how many."""
    rows = await conn.fetch(_TO_ISSUE, statement_ids)
    issued = 0
    for merchant_id in dict.fromkeys(r["merchant_id"] for r in rows):
        mine = [r for r in rows if r["merchant_id"] == merchant_id]
        await conn.execute(
            "INSERT INTO invoice_sequences (merchant_id) VALUES ($1) ON CONFLICT DO NOTHING", merchant_id
        )
        last = await conn.fetchval(
            "SELECT last_number FROM invoice_sequences WHERE merchant_id = $1 FOR UPDATE", merchant_id
        )
        for row in mine:
            last += 1
            await _issue_one(conn, row, last, sealer)
            issued += 1
        await conn.execute("UPDATE invoice_sequences SET last_number = $2 WHERE merchant_id = $1", merchant_id, last)
    return issued


async def _issue_one(conn: asyncpg.Connection, row: asyncpg.Record, seq: int, sealer: Sealer | None) -> None:
    partner_vat = None
    if row["vat_sealed"] is not None:
        if sealer is None:
            raise InvoiceError(
                f"statement {row['number']}: a self-billed invoice prints the partner's VAT number, which only the "
                "secret key opens; close it through `clickmint settle` or the portal"
            )
        from billing.payouts import sealed_where

        partner_vat = sealer.open_text(
            row["vat_sealed"], sealed_where(row["merchant_id"], row["partner_id"], "vat_number")
        )
    rule = vat_rule(
        row["merchant_country"],
        row["entity"],
        vat_country(partner_vat) if partner_vat else row["partner_country"],
        partner_vat is not None,
    )
    rate = Decimal(row["vat_rate"]) if rule == "domestic" else Decimal(0)
    groups = await conn.fetch(
        """SELECT o.name AS offer, l.kind, sum(coalesce(l.fx_amount_minor, l.amount_minor))::bigint AS net
           FROM ledger_lines l JOIN offers o ON o.id = l.offer_id WHERE l.statement_id = $1
           GROUP BY o.name, l.kind ORDER BY o.name, l.kind""",
        row["id"],
    )
    w = Words(row["locale"] or "en")  # its lines are written in the statement's language, once, when issued
    nets = [
        (w._("%(offer)s: %(kind)s commission") % {"offer": g["offer"], "kind": g["kind"]}, g["net"]) for g in groups
    ]
    if row["carried_in_minor"]:
        nets.append((w._("Balance carried in from earlier statements"), row["carried_in_minor"]))
    lines = lines_with_vat(nets, rule, rate, row["rounding"])
    net = sum(line.net_minor for line in lines)
    assert net == row["total_minor"], "an invoice's net is its statement's total"
    vat = sum(line.vat_minor for line in lines)
    parties = {
        "merchant": {
            "legal_name": row["merchant_legal"] or row["merchant_name"],
            "address": row["merchant_address"] or "",
            "country": row["merchant_country"] or "",
            "vat_number": row["merchant_vat"] or "",
        },
        "partner": {
            "legal_name": row["partner_legal"] or row["partner_name"],
            "address": row["partner_address"] or "",
            "country": row["partner_country"] or "",
            "vat_number": partner_vat or "",
            "entity": row["entity"] or "",
        },
        "lines": [[line.description, line.net_minor, line.vat_minor] for line in lines],
    }
    await conn.execute(
        """INSERT INTO self_billed_invoices (statement_id, merchant_id, number, seq, vat_rule, vat_rate, net_minor,
                                             vat_minor, gross_minor, parties)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)""",
        row["id"],
        row["merchant_id"],
        f"SB-{row['slug'].upper()}-{seq:06d}",
        seq,
        rule,
        rate,
        net,
        vat,
        net + vat,
        orjson.dumps(parties).decode(),
    )


async def document(conn: asyncpg.Connection, statement_id: int) -> InvoiceDoc | None:
    """A statement's self-billed invoice as the exports print it, or None (not self-billed)."""
    row = await conn.fetchrow("SELECT * FROM self_billed_invoices WHERE statement_id = $1", statement_id)
    if row is None:
        return None
    parties = orjson.loads(row["parties"])
    lines = tuple(InvoiceLine(d, n, v) for d, n, v in parties.pop("lines"))
    return InvoiceDoc(row["number"], row["vat_rule"], Decimal(row["vat_rate"]), lines, parties)


def issued_on(closed_at: dt.datetime | None) -> str:
    return closed_at.astimezone(dt.UTC).date().isoformat() if closed_at else ""
