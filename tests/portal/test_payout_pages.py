"""The payout pages without a browser: a refused form comes back as the same page (values kept, a summary of
the problems linking to each field, the field marked invalid), a good one saves; the operator's payouts page
makes a batch from closed statements, lists what it left out, and pays it."""

from __future__ import annotations

import re

from tests.portal.kit import login, portal_client, world

FORM = {
    "legal_name": "Alice Media GmbH",
    "address": "Hauptstr. 1, Berlin",
    "country": "DE",
    "entity": "business",
    "method": "sepa",
    "iban": "DE89 3704 0044 0532 0130 01",  # a wrong check digit
    "bic": "",
    "paypal_email": "",
    "vat_number": "",
}


def token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def test_partner_form_refused_then_saved_and_a_blank_iban_keeps_the_stored_one(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
        listed = await client.get("/payout-details")
        assert listed.status_code == 200 and "Shop M" in listed.text and "Not set yet" in listed.text
        page = await client.get(f"/payout-details/{w.merchant_id}")
        csrf = token(page.text)
        refused = await client.post(f"/payout-details/{w.merchant_id}", data={**FORM, "csrf_token": csrf})
        assert refused.status_code == 400
        assert "There is a problem" in refused.text and 'href="#iban"' in refused.text
        assert re.search(r'id="iban" name="iban" aria-invalid="true" aria-describedby="[^"]*iban-error"', refused.text)
        assert 'value="Alice Media GmbH"' in refused.text  # the values are kept
        assert await db.fetchval("SELECT count(*) FROM partner_payout_details") == 0
        saved = await client.post(
            f"/payout-details/{w.merchant_id}", data={**FORM, "iban": "DE89370400440532013000", "csrf_token": csrf}
        )
        assert saved.status_code == 303 and saved.headers["location"].startswith("/payout-details?notice=")
        moved = await client.post(
            f"/payout-details/{w.merchant_id}", data={**FORM, "iban": "", "address": "Neue Str. 2", "csrf_token": csrf}
        )
        assert moved.status_code == 303
        shown = await client.get("/payout-details")
        assert "DE•••3000" in shown.text and "DE89370400440532013000" not in shown.text
    assert await db.fetchval("SELECT address FROM partner_payout_details") == "Neue Str. 2"
    assert await db.fetchval("SELECT iban_masked FROM partner_payout_details") == "DE•••3000"
    assert await db.fetchval("SELECT count(*) FROM outbox WHERE to_email = 'alice@p.example'") == 2
    async with portal_client(settings) as client:  # a programme that did not approve Alice is not there
        await login(client, "alice@p.example")
        assert (await client.get(f"/payout-details/{w.other_merchant_id}")).status_code == 404


async def test_operator_payouts_page_settings_batch_and_paid(db, settings):
    w = await world(db)
    a_statement = await db.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           VALUES ('A-NOV', $1, $2, 'EUR', '2026-11-01', '2026-12-01') RETURNING id""",
        w.merchant_id,
        w.a_partner,
    )
    await db.execute(
        """UPDATE statements SET status = 'closed', total_minor = 4321, payable = true, carried_out_minor = 0,
                                 closed_at = now() WHERE id = $1""",
        a_statement,
    )
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
        page = await client.get(f"/payout-details/{w.merchant_id}")
        await client.post(
            f"/payout-details/{w.merchant_id}",
            data={**FORM, "iban": "DE89370400440532013000", "csrf_token": token(page.text)},
        )
    async with portal_client(settings) as client:
        await login(client, "ops@shop-m.example")
        page = await client.get("/admin/payouts")
        assert page.status_code == 200 and "No batch yet" in page.text
        csrf = token(page.text)
        bad = await client.post(
            "/admin/payouts", data={"do": "settings", "payout_iban": "ES00 0000", "vat_rate": "21", "csrf_token": csrf}
        )
        assert bad.status_code == 400 and 'href="#payout_iban"' in bad.text
        ok = await client.post(
            "/admin/payouts",
            data={
                "do": "settings",
                "legal_name": "Shop M SL",
                "country": "ES",
                "payout_iban": "ES9121000418450200051332",
                "vat_rate": "21",
                "csrf_token": csrf,
            },
        )
        assert ok.status_code == 303
        made = await client.post(
            "/admin/payouts", data={"do": "batch", "period": "2026-11", "format": "sepa", "csrf_token": csrf}
        )
        assert made.status_code == 200, made.text
        batch_id = await db.fetchval("SELECT id FROM payout_batches")
        assert f"Batch <b>{batch_id}</b>" in made.text and "43.21 EUR" in made.text
        xml = await client.get(f"/api/v1/admin/payout-batches/{batch_id}/file")
        assert xml.status_code == 200 and b'<InstdAmt Ccy="EUR">43.21</InstdAmt>' in xml.content
        paid = await client.post("/admin/payouts", data={"do": "paid", "batch": batch_id, "csrf_token": csrf})
        assert paid.status_code == 303
    assert await db.fetchval("SELECT status FROM statements WHERE id = $1", a_statement) == "paid"
    assert await db.fetchval("SELECT vat_rate::text FROM merchants WHERE id = $1", w.merchant_id) == "21.00"
