"""Self-billed invoices on real PostgreSQL, from statements settle closes: gap-free numbers per merchant taken
in the closing transaction, VAT by the merchant's rule per partner, printed on the CSV and PDF (re-exported byte
for byte), paid gross by the payout batch; a merchant that does not self-bill prints exactly as before."""

from __future__ import annotations

import datetime as dt

import asyncpg
import pytest

from billing import invoices, payouts, statements
from billing.settle import settle
from kernel.sealed import Sealer
from tests.conftest import TEST_SECRET
from tests.integration.test_payouts import _details, _partner

NOV, DEC = "2026-11", "2026-12"
SEALER = Sealer(TEST_SECRET)


async def _merchant(db: asyncpg.Connection, slug: str, self_billing: bool) -> tuple[int, dict[str, int]]:
    m = await db.fetchval(
        """INSERT INTO merchants (slug, name, currency, legal_name, country, vat_number, address, self_billing,
                                  vat_rate, payout_iban)
           VALUES ($1, 'Tienda', 'EUR', 'Tienda Ejemplo SL', 'ES', 'ESB58378431', 'Calle 1, Madrid', $2, 21,
                   'ES9121000418450200051332') RETURNING id""",
        slug,
        self_billing,
    )
    offer = await db.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, hold_days)
           VALUES ($1, 'Shoes', 'https://shop.example/', 'EUR', 0) RETURNING id""",
        m,
    )
    return m, {"EUR": offer}


@pytest.fixture
async def closed(db: asyncpg.Connection) -> dict[str, int]:
    m, offers = await _merchant(db, "tienda", True)
    ids = {"merchant": m}
    ids["es"] = await _partner(db, m, offers, "Esteban", [(10000, "EUR"), (333, "EUR")])
    ids["de"] = await _partner(db, m, offers, "Dieter", [(5000, "EUR")])
    ids["fr"] = await _partner(db, m, offers, "Francoise", [(2000, "EUR")])
    ids["none"] = await _partner(db, m, offers, "Nadie", [(700, "EUR")])
    ids["small"] = await _partner(db, m, offers, "Small", [(100, "EUR")], min_payout=5000)
    await _details(db, m, ids["es"], method="sepa", iban="ES7921000813610123456789", country="ES",
                   vat_number="ESA28015865", legal_name="Esteban SL")  # fmt: skip
    await _details(db, m, ids["de"], method="sepa", iban="DE89370400440532013000", vat_number="DE136695976",
                   legal_name="Dieter GmbH")  # fmt: skip
    await _details(db, m, ids["fr"], method="paypal", paypal_email="f@pay.example", country="FR",
                   entity="individual", legal_name="Françoise Martin")  # fmt: skip
    report = await settle(db, NOV, now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC), close=True, sealer=SEALER)
    assert report.statements.closed == 5
    return ids


async def _invoice_of(db, merchant_id: int, partner_id: int, period: str = NOV) -> asyncpg.Record | None:
    return await db.fetchrow(
        """SELECT i.*, s.number AS statement FROM self_billed_invoices i JOIN statements s ON s.id = i.statement_id
           WHERE s.merchant_id = $1 AND s.partner_id = $2 AND s.period_start = $3""",
        merchant_id,
        partner_id,
        statements.month_bounds(period)[0],
    )


async def test_numbers_vat_rules_and_amounts(db, closed):
    m = closed["merchant"]
    es, de, fr, none = [await _invoice_of(db, m, closed[k]) for k in ("es", "de", "fr", "none")]
    assert await _invoice_of(db, m, closed["small"]) is None  # not payable: carried over, invoiced when paid
    # Gap-free, in statement order.
    assert sorted(i["seq"] for i in (es, de, fr, none)) == [1, 2, 3, 4]
    assert [i["number"] for i in sorted((es, de, fr, none), key=lambda i: i["statement"])] == [
        f"SB-TIENDA-{n:06d}" for n in range(1, 5)
    ]
    assert await db.fetchval("SELECT last_number FROM invoice_sequences WHERE merchant_id = $1", m) == 4
    # Domestic 21 %, one rounding per line: a single offer line of 103.33 -> VAT 21.70 (21.6993).
    assert (es["vat_rule"], es["net_minor"], es["vat_minor"], es["gross_minor"]) == ("domestic", 10333, 2170, 12503)
    assert (de["vat_rule"], de["vat_minor"], de["gross_minor"]) == ("reverse_charge", 0, 5000)
    assert (fr["vat_rule"], fr["vat_minor"]) == ("none", 0)
    assert (none["vat_rule"], none["vat_minor"]) == ("none", 0)
    with pytest.raises(asyncpg.IntegrityConstraintViolationError):
        await db.execute("UPDATE self_billed_invoices SET vat_minor = 0")

    # December continues the sequence.
    offer = await db.fetchval("SELECT id FROM offers WHERE merchant_id = $1", m)
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, action, status, hold_until)
           VALUES (gen_random_uuid(), '2026-12-05', 'action', $1, $2, $3, 'signup', 'pending', '2026-12-05')""",
        m,
        offer,
        closed["es"],
    )
    await db.execute(
        "INSERT INTO commissions SELECT event_id, 'cpa', 1000, 'EUR', 'x' FROM conversions WHERE ts = '2026-12-05'"
    )
    await settle(db, DEC, now=dt.datetime(2027, 1, 2, tzinfo=dt.UTC), close=True, sealer=SEALER)
    dec = await _invoice_of(db, m, closed["es"], DEC)
    assert dec["seq"] == 5 and dec["number"] == "SB-TIENDA-000005"


async def test_the_exports_print_the_invoice_and_re_export_byte_for_byte(db, closed):
    m = closed["merchant"]
    sid = await db.fetchval("SELECT id FROM statements WHERE merchant_id = $1 AND partner_id = $2", m, closed["es"])
    csv1 = await statements.export(db, sid, "csv")
    pdf1 = await statements.export(db, sid, "pdf")
    text = csv1.decode()
    assert "Self-billed invoice,SB-TIENDA-00000" in text
    assert "Supplier (partner),Esteban SL" in text and "Supplier VAT number,ESA28015865" in text
    assert "Customer (merchant),Tienda Ejemplo SL" in text and "Customer VAT number,ESB58378431" in text
    assert "Shoes: cpa commission,103.33,21.00%,21.70,125.03" in text
    assert "Invoice total (paid),125.03" in text
    assert await statements.export(db, sid, "csv") == csv1 and await statements.export(db, sid, "pdf") == pdf1
    assert pdf1.startswith(b"%PDF")
    de = await db.fetchval("SELECT id FROM statements WHERE merchant_id = $1 AND partner_id = $2", m, closed["de"])
    assert (
        "Reverse charge: VAT to be accounted for by the recipient" in (await statements.export(db, de, "csv")).decode()
    )


async def test_the_batch_pays_the_invoice_gross(db, closed):
    batch = await payouts.export(db, SEALER, closed["merchant"], NOV, "sepa", actor=payouts.Actor("t"))
    amounts = dict(await db.fetch("SELECT s.partner_id, i.amount_minor FROM payout_batch_items i "
                                  "JOIN statements s ON s.id = i.statement_id"))  # fmt: skip
    assert amounts == {closed["es"]: 12503, closed["de"]: 5000}
    assert batch.total_minor == 17503 and b'<InstdAmt Ccy="EUR">125.03</InstdAmt>' in batch.data


async def test_a_merchant_that_does_not_self_bill_prints_as_before(db):
    m, offers = await _merchant(db, "plain", False)
    p = await _partner(db, m, offers, "Pat", [(1000, "EUR")])
    await _details(db, m, p, method="sepa", iban="DE89370400440532013000", vat_number="DE136695976")
    await settle(db, NOV, now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC), close=True)  # no key needed
    sid = await db.fetchval("SELECT id FROM statements")
    text = (await statements.export(db, sid, "csv")).decode()
    assert "invoice" not in text.lower() and "VAT" not in text
    assert await db.fetchval("SELECT count(*) FROM self_billed_invoices") == 0


async def test_closing_without_the_key_issues_nothing_and_consumes_no_number(db):
    m, offers = await _merchant(db, "keyless", True)
    p = await _partner(db, m, offers, "Pat", [(1000, "EUR")])
    await _details(db, m, p, method="sepa", iban="DE89370400440532013000", vat_number="DE136695976")
    with pytest.raises(invoices.InvoiceError):
        await settle(db, NOV, now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC), close=True)
    assert await db.fetchval("SELECT count(*) FROM statements WHERE status = 'closed'") == 0
    assert await db.fetchval("SELECT count(*) FROM invoice_sequences") == 0
    await settle(db, NOV, now=dt.datetime(2026, 12, 2, tzinfo=dt.UTC), close=True, sealer=SEALER)
    assert await db.fetchval("SELECT number FROM self_billed_invoices") == "SB-KEYLESS-000001"


async def test_two_closes_at_once_take_consecutive_numbers(settings, db):
    """Two transactions closing statements of the same merchant at the same time: the sequence row's lock makes
    the second wait, so the numbers are 1 and 2, never the same one twice."""
    import asyncio

    m, offers = await _merchant(db, "busy", True)
    ids = []
    for name in ("Ann", "Ben"):
        p = await _partner(db, m, offers, name, [])
        ids.append(
            await db.fetchval(
                """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
                   VALUES ($1, $2, $3, 'EUR', '2026-11-01', '2026-12-01') RETURNING id""",
                f"S-{name}",
                m,
                p,
            )
        )
        await db.execute(
            """INSERT INTO ledger_lines (source, kind, merchant_id, partner_id, offer_id, currency, amount_minor, basis,
                                         occurred_at, statement_id)
               VALUES ($1, 'cpa', $2, $3, $4, 'EUR', 1000, 'x', '2026-11-05', $5)""",
            f"ev-{name}",
            m,
            p,
            offers["EUR"],
            ids[-1],
        )
    conns = [await asyncpg.connect(settings.database_url) for _ in ids]
    try:
        now = dt.datetime(2026, 12, 2, tzinfo=dt.UTC)

        async def close(conn: asyncpg.Connection, sid: int) -> None:
            async with conn.transaction():
                await statements.close(conn, sid, now, SEALER)
                await asyncio.sleep(0.2)  # hold the lock while the other one tries

        await asyncio.gather(*(close(c, sid) for c, sid in zip(conns, ids, strict=True)))
    finally:
        for c in conns:
            await c.close()
    rows = await db.fetch("SELECT seq, number FROM self_billed_invoices ORDER BY seq")
    assert [r["seq"] for r in rows] == [1, 2]
    assert [r["number"] for r in rows] == ["SB-BUSY-000001", "SB-BUSY-000002"]
