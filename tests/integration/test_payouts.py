"""Payout batches from statements that settle really closed, on real PostgreSQL: the SEPA file validates
against the pain.001 schema sepaxml ships (checked here with xmlschema, independently of the export), its
count, amounts and control sum are the statements'; the PayPal CSV has PayPal's columns; everything left out
says why; a batch re-exports byte for byte, is paid in one transaction, and no statement is in two open
batches."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
import xml.etree.ElementTree as ET
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
import sepaxml
import xmlschema

from billing import payouts
from billing.settle import settle
from kernel.sealed import Sealer
from kernel.settings import Settings
from portal import payout_data
from portal.auth import Principal
from tests.conftest import TEST_SECRET
from tests.helpers import cli_env, run_cli

PERIOD = "2026-11"
CLOSING = dt.datetime(2026, 12, 2, 3, 0, tzinfo=dt.UTC)
CLI = Principal(0, "cli", "", "network", None, None, "cli", frozenset())
ACTOR = payouts.Actor("test")
SEPA_NS = "{urn:iso:std:iso:20022:tech:xsd:%s}"


async def _partner(
    db: asyncpg.Connection,
    merchant_id: int,
    offer_ids: dict[str, int],
    name: str,
    commissions: list[tuple[int, str]],
    min_payout: int = 0,
) -> int:
    partner_id = await db.fetchval(
        "INSERT INTO partners (name, email, min_payout_minor) VALUES ($1, $2, $3) RETURNING id",
        name, f"{name.lower()}@partners.example", min_payout,
    )  # fmt: skip
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
        partner_id, merchant_id,
    )  # fmt: skip
    for n, (amount, currency) in enumerate(commissions):
        event = uuid.uuid4()
        await db.execute(
            """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, action, status,
                                        hold_until, via, authenticated)
               VALUES ($1, $2, 'action', $3, $4, $5, 'signup', 'pending', $2, 'postback', true)""",
            event, dt.datetime(2026, 11, 10 + n, tzinfo=dt.UTC), merchant_id, offer_ids[currency], partner_id,
        )  # fmt: skip
        await db.execute(
            "INSERT INTO commissions (event_id, kind, amount_minor, currency, basis) VALUES ($1, 'cpa', $2, $3, 'x')",
            event, amount, currency,
        )  # fmt: skip
    return partner_id


async def _details(db, merchant_id: int, partner_id: int, **values: str) -> None:
    base = {"legal_name": "Partner Ltd", "address": "1 Road", "country": "DE", "entity": "business"}
    await payout_data.save(db, Sealer(TEST_SECRET), CLI, merchant_id, partner_id, {**base, **values})


@pytest.fixture
async def month(db: asyncpg.Connection) -> dict[str, int]:
    """A merchant paying from a Spanish account; six partners whose November statements settle closed."""
    m = await db.fetchval(
        """INSERT INTO merchants (slug, name, currency, legal_name, country, payout_iban, payout_bic)
           VALUES ('shop-es', 'Tienda', 'EUR', 'Tienda Ejemplo SL', 'ES', 'ES9121000418450200051332', 'CAIXESBBXXX')
           RETURNING id"""
    )
    offers = {}
    for currency in ("EUR", "USD"):
        offers[currency] = await db.fetchval(
            """INSERT INTO offers (merchant_id, name, destination_url, currency, hold_days)
               VALUES ($1, 'Offer', 'https://shop.example/', $2, 0) RETURNING id""",
            m, currency,
        )  # fmt: skip
    ids = {"merchant": m}
    ids["anna"] = await _partner(db, m, offers, "Anna", [(12345, "EUR")])
    ids["bert"] = await _partner(db, m, offers, "Bert", [(700, "EUR"), (301, "EUR")])
    ids["cleo"] = await _partner(db, m, offers, "Cleo", [(2000, "EUR")])
    ids["dora"] = await _partner(db, m, offers, "Dora", [(999, "EUR")])
    ids["emil"] = await _partner(db, m, offers, "Emil", [(100, "EUR")], min_payout=5000)
    ids["fay"] = await _partner(db, m, offers, "Fay", [(4200, "USD")])
    await _details(db, m, ids["anna"], method="sepa", iban="DE89 3704 0044 0532 0130 00", legal_name="Anna Media GmbH")
    await _details(db, m, ids["bert"], method="sepa", iban="FR1420041010050500013M02606", bic="PSSTFRPPXXX",
                   country="FR", entity="individual", legal_name="Bert Ériç")  # fmt: skip
    await _details(db, m, ids["cleo"], method="paypal", paypal_email="cleo@pay.example")
    await _details(db, m, ids["emil"], method="sepa", iban="DE89370400440532013000")
    await _details(db, m, ids["fay"], method="sepa", iban="DE89370400440532013000")
    report = await settle(db, PERIOD, now=CLOSING, close=True)
    assert report.statements.closed == 6
    return ids


async def _numbers(db, merchant_id: int) -> dict[int, asyncpg.Record]:
    rows = await db.fetch("SELECT * FROM statements WHERE merchant_id = $1", merchant_id)
    return {r["partner_id"]: r for r in rows}


@pytest.mark.parametrize("schema", ["pain.001.001.09", "pain.001.001.03"])
async def test_a_sepa_batch_validates_and_equals_its_statements(db, month, schema):
    stmts = await _numbers(db, month["merchant"])
    batch = await payouts.export(
        db, Sealer(TEST_SECRET), month["merchant"], PERIOD, "sepa", actor=ACTOR, schema=schema,
        now=CLOSING, execution=dt.date(2026, 12, 3),
    )  # fmt: skip
    xsd = xmlschema.XMLSchema(str(Path(sepaxml.__file__).parent / "schemas" / f"{schema}.xsd"))
    xsd.validate(batch.data.decode())  # raises when the file does not validate
    q = SEPA_NS % schema
    root = ET.fromstring(batch.data)
    header = root.find(f"{q}CstmrCdtTrfInitn/{q}GrpHdr")
    paid = [stmts[month["anna"]], stmts[month["bert"]]]
    assert [s["total_minor"] for s in paid] == [12345, 1001]
    assert header.find(f"{q}NbOfTxs").text == "2"
    assert Decimal(header.find(f"{q}CtrlSum").text) == Decimal(sum(s["total_minor"] for s in paid)) / 100
    assert header.find(f"{q}MsgId").text == batch.id
    txs = {
        tx.find(f"{q}PmtId/{q}EndToEndId").text: (
            Decimal(tx.find(f"{q}Amt/{q}InstdAmt").text),
            tx.find(f"{q}Amt/{q}InstdAmt").get("Ccy"),
            tx.find(f"{q}CdtrAcct/{q}Id/{q}IBAN").text,
            tx.find(f"{q}Cdtr/{q}Nm").text,
        )
        for tx in root.iter(f"{q}CdtTrfTxInf")
    }
    assert txs == {
        stmts[month["anna"]]["number"]: (Decimal("123.45"), "EUR", "DE89370400440532013000", "Anna Media GmbH"),
        stmts[month["bert"]]["number"]: (Decimal("10.01"), "EUR", "FR1420041010050500013M02606", "Bert Eric"),
    }
    debtor = root.find(f"{q}CstmrCdtTrfInitn/{q}PmtInf/{q}DbtrAcct/{q}Id/{q}IBAN").text
    assert debtor == "ES9121000418450200051332"
    reasons = {item["statement"]: item["reason"] for item in batch.left_out}
    assert reasons == {
        stmts[month["cleo"]]["number"]: "other_method",
        stmts[month["dora"]]["number"]: "no_payout_details",
        stmts[month["emil"]]["number"]: "below_minimum",
        stmts[month["fay"]]["number"]: "other_currency",
    }
    recorded = await db.fetchrow("SELECT * FROM payout_batches WHERE id = $1", batch.id)
    assert (recorded["count"], recorded["total_minor"], recorded["status"]) == (2, 13346, "open")
    assert b"DE89370400440532013000" not in recorded["file_sealed"]


async def test_a_batch_exports_the_same_bytes_and_no_statement_is_in_two_open_batches(db, month):
    sealer = Sealer(TEST_SECRET)
    first = await payouts.export(db, sealer, month["merchant"], PERIOD, "sepa", actor=ACTOR)
    again = await payouts.export(db, sealer, month["merchant"], PERIOD, "sepa", actor=ACTOR)
    assert again.reused and again.id == first.id and again.data == first.data
    assert (await payouts.load(db, sealer, first.id)).data == first.data
    # A changed IBAN does not alter a recorded batch's file.
    await _details(db, month["merchant"], month["anna"], method="sepa", iban="FR1420041010050500013M02606")
    assert (await payouts.load(db, sealer, first.id)).data == first.data
    assert await db.fetchval("SELECT count(*) FROM payout_batches") == 1
    statement = await db.fetchval("SELECT statement_id FROM payout_batch_items LIMIT 1")
    await db.execute(
        """INSERT INTO payout_batches (id, merchant_id, period_start, format, schema_version, currency, count,
                                       total_minor, file_sealed, file_sha256, created_by)
           VALUES ('PB-X', $1, '2026-11-01', 'sepa', 'pain.001.001.09', 'EUR', 1, 1, '\\x00', 'x', 'test')""",
        month["merchant"],
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("INSERT INTO payout_batch_items VALUES ('PB-X', $1, 1)", statement)


async def test_paid_marks_every_statement_at_once_and_cancel_frees_them(db, month):
    sealer = Sealer(TEST_SECRET)
    stmts = await _numbers(db, month["merchant"])
    first = await payouts.export(db, sealer, month["merchant"], PERIOD, "sepa", actor=ACTOR)
    await payouts.cancel(db, first.id, ACTOR)
    second = await payouts.export(db, sealer, month["merchant"], PERIOD, "sepa", actor=ACTOR)
    assert second.id != first.id and second.statements == first.statements
    with pytest.raises(payouts.PayoutError) as refused:  # another merchant's operator: as if it did not exist
        await payouts.mark_paid(db, second.id, ACTOR, merchant_id=month["merchant"] + 1000)
    assert refused.value.code == "not_found"
    paid = await payouts.mark_paid(db, second.id, ACTOR)
    assert sorted(paid) == sorted([stmts[month["anna"]]["number"], stmts[month["bert"]]["number"]])
    rows = await db.fetch("SELECT status, paid_at FROM statements WHERE number = ANY($1::text[])", paid)
    assert {r["status"] for r in rows} == {"paid"} and len({r["paid_at"] for r in rows}) == 1
    with pytest.raises(payouts.PayoutError) as twice:
        await payouts.mark_paid(db, second.id, ACTOR)
    assert twice.value.code == "conflict"
    with pytest.raises(payouts.PayoutError) as nothing:
        await payouts.export(db, sealer, month["merchant"], PERIOD, "sepa", actor=ACTOR)
    assert nothing.value.code == "nothing_to_pay"
    assert {i["statement"]: i["reason"] for i in nothing.value.left_out}[paid[0]] == "already_paid"
    actions = [
        r["action"]
        for r in await db.fetch("SELECT action FROM audit_log WHERE object_type = 'payout_batch' ORDER BY id")
    ]
    assert actions == ["create_payout_batch", "cancel_payout_batch", "create_payout_batch", "pay_payout_batch"]


async def test_a_paypal_batch_has_paypals_columns(db, month):
    stmts = await _numbers(db, month["merchant"])
    batch = await payouts.export(db, Sealer(TEST_SECRET), month["merchant"], PERIOD, "paypal", actor=ACTOR)
    rows = list(csv.reader(io.StringIO(batch.data.decode())))
    # PayPal Payouts upload, no header: Recipient identifier, Payment amount, Currency, Customer ID (<= 30, no
    # spaces), Note to recipient (<= 400), Recipient wallet.
    assert rows == [
        [
            "cleo@pay.example",
            "20.00",
            "EUR",
            stmts[month["cleo"]]["number"],
            f"Commission from Tienda, November 2026, statement {stmts[month['cleo']]['number']}",
            "PAYPAL",
        ]
    ]
    assert len(rows[0][3]) <= 30 and " " not in rows[0][3] and len(rows[0][4]) <= 400
    reasons = {item["statement"]: item["reason"] for item in batch.left_out}
    assert reasons[stmts[month["anna"]]["number"]] == "other_method"
    assert reasons[stmts[month["fay"]]["number"]] == "other_method"


async def test_the_command_line_exports_again_byte_for_byte_and_pays(settings: Settings, db, month, tmp_path):
    env = cli_env(settings)
    out1, out2 = tmp_path / "a.xml", tmp_path / "b.xml"
    code, _, err = await run_cli(env, "payouts", "export", "--merchant", "shop-es", "--period", PERIOD,
                                 "--format", "sepa", "--schema", "pain.001.001.03", "-o", str(out1))  # fmt: skip
    assert code == 0, err
    batch_id = await db.fetchval("SELECT id FROM payout_batches")
    assert f"batch {batch_id} made: 2 payments, 133.46 EUR, pain.001.001.03" in err
    assert "no_payout_details" in err and "below_minimum" in err
    code, _, err = await run_cli(env, "payouts", "file", batch_id, "-o", str(out2))
    assert code == 0, err
    assert out1.read_bytes() == out2.read_bytes()
    code, out, err = await run_cli(env, "payouts", "paid", batch_id)
    assert code == 0 and "2 statements marked paid" in out
    code, _, err = await run_cli(env, "payouts", "paid", batch_id)
    assert code == 1 and "already paid" in err
    code, out, err = await run_cli(env, "payouts", "list", "--merchant", "shop-es")
    assert code == 0 and batch_id in out and "paid" in out and "133.46 EUR" in out
    code, _, err = await run_cli(env, "payouts", "export", "--merchant", "nope", "--period", PERIOD,
                                 "--format", "sepa", "-o", "-")  # fmt: skip
    assert code == 2 and "no merchant 'nope'" in err


async def test_purging_a_partner_erases_its_payout_details(db, month):
    from billing import privacy

    report = await privacy.purge_partner(db, month["anna"], requested_by="ticket 1")
    assert report.counts["payout_details"] == 1
    assert await db.fetchval("SELECT count(*) FROM partner_payout_details WHERE partner_id = $1", month["anna"]) == 0
    assert await db.fetchval("SELECT count(*) FROM partner_payout_details") == 4  # the others' stay


async def test_two_exports_at_once_never_batch_a_statement_twice(settings: Settings, db, month):
    import asyncio

    conns = [await asyncpg.connect(settings.database_url) for _ in range(2)]
    try:
        results = await asyncio.gather(
            *(payouts.export(c, Sealer(TEST_SECRET), month["merchant"], PERIOD, "sepa", actor=ACTOR) for c in conns)
        )
    finally:
        for c in conns:
            await c.close()
    assert results[0].id == results[1].id  # the second waited, found nothing new, and exported the first again
    assert {results[0].reused, results[1].reused} == {False, True}
    assert await db.fetchval("SELECT count(*) FROM payout_batch_items") == 2
