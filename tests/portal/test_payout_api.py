"""The operator's payouts API: merchant payout settings refused per field, a batch made from a closed statement
(its left-out statements with reasons), its file the same bytes twice, paid once (then 409); a partner
cannot reach any of it, and a network operator names the merchant."""

from __future__ import annotations

from tests.portal.kit import add_user, csrf_headers, login, portal_client, world

DETAILS = {
    "legal_name": "Alice Media GmbH",
    "address": "Hauptstr. 1",
    "country": "DE",
    "entity": "business",
    "method": "sepa",
    "iban": "DE89370400440532013000",
}


async def _closed(db, merchant_id: int, partner_id: int, number: str, total: int, currency: str = "EUR") -> int:
    sid = await db.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           VALUES ($1, $2, $3, $4, '2026-11-01', '2026-12-01') RETURNING id""",
        number,
        merchant_id,
        partner_id,
        currency,
    )
    await db.execute(
        """UPDATE statements SET status = 'closed', total_minor = $2, payable = $2::bigint > 0, carried_out_minor = 0,
                                 closed_at = now() WHERE id = $1""",
        sid,
        total,
    )
    return sid


async def test_operator_makes_downloads_and_pays_a_batch(db, settings):
    w = await world(db)
    await _closed(db, w.merchant_id, w.a_partner, "A-NOV", 4321)
    await _closed(db, w.merchant_id, w.b_partner, "B-NOV", 999)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        await client.put(f"/api/v1/payout-details/{w.merchant_id}", json=DETAILS, headers=csrf_headers(csrf))
        for path in ("/api/v1/admin/payout-batches", f"/api/v1/admin/merchants/{w.merchant_id}/payout-settings"):
            assert (await client.get(path)).status_code == 404  # an operator's route is not there for a partner
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        h = csrf_headers(csrf)
        settings_path = f"/api/v1/admin/merchants/{w.merchant_id}/payout-settings"
        for body, field in (
            ({"payout_iban": "ES91 2100 0418 4502 0005 1333"}, "payout_iban"),
            ({"vat_rate": "121"}, "vat_rate"),
            ({"vat_rate": "7.555"}, "vat_rate"),
            ({"country": "Spain"}, "country"),
            ({"country": "ES", "vat_number": "ESB58378432"}, "vat_number"),
        ):
            refused = await client.put(settings_path, json=body, headers=h)
            assert refused.status_code == 400 and refused.json()["detail"].startswith(f"{field}:"), refused.text
        assert await db.fetchval("SELECT payout_iban FROM merchants WHERE id = $1", w.merchant_id) is None
        no_iban = await client.post(
            "/api/v1/admin/payout-batches", json={"period": "2026-11", "format": "sepa"}, headers=h
        )
        assert no_iban.status_code == 400 and no_iban.json()["error"] == "invalid_payout_file"
        saved = await client.put(
            settings_path,
            json={"legal_name": "Shop M SL", "country": "ES", "payout_iban": "ES91 2100 0418 4502 0005 1332"},
            headers=h,
        )
        assert saved.status_code == 200 and saved.json()["payout_iban"] == "ES9121000418450200051332"
        made = await client.post(
            "/api/v1/admin/payout-batches", json={"period": "2026-11", "format": "sepa"}, headers=h
        )
        assert made.status_code == 200, made.text
        batch = made.json()["batch"]
        assert (batch["count"], batch["total_minor"], batch["statements"]) == (1, 4321, ["A-NOV"])
        assert made.json()["left_out"] == [
            {
                "statement": "B-NOV",
                "partner_id": w.b_partner,
                "currency": "EUR",
                "total_minor": 999,
                "reason": "no_payout_details",
                "detail": "the partner has given no payout details for this programme",
            }
        ]
        first = await client.get(f"/api/v1/admin/payout-batches/{batch['id']}/file")
        second = await client.get(f"/api/v1/admin/payout-batches/{batch['id']}/file")
        assert first.status_code == 200 and first.content == second.content
        assert first.headers["content-type"].startswith("application/xml")
        assert b"DE89370400440532013000" in first.content
        listed = (await client.get("/api/v1/admin/payout-batches")).json()["batches"]
        assert [b["id"] for b in listed] == [batch["id"]]
        paid = await client.post(f"/api/v1/admin/payout-batches/{batch['id']}/paid", headers=h)
        assert paid.status_code == 200 and paid.json()["statements"] == ["A-NOV"]
        again = await client.post(f"/api/v1/admin/payout-batches/{batch['id']}/paid", headers=h)
        assert again.status_code == 409
        nothing = await client.post(
            "/api/v1/admin/payout-batches", json={"period": "2026-11", "format": "sepa"}, headers=h
        )
        assert nothing.status_code == 200 and nothing.json()["batch"] is None
        for period in ("2026-13", "0000-05", "9999-12", "26-11"):
            bad = await client.post(
                "/api/v1/admin/payout-batches", json={"period": period, "format": "sepa"}, headers=h
            )
            assert bad.status_code == 400 and bad.json()["detail"].startswith("period:")
        unknown = await client.post(
            "/api/v1/admin/payout-batches",
            json={"period": "2026-11", "format": "paypal", "schema": "pain.001.001.03"},
            headers=h,
        )
        assert unknown.status_code == 400 and unknown.json()["detail"].startswith("schema:")
    assert await db.fetchval("SELECT status FROM statements WHERE number = 'A-NOV'") == "paid"
    assert await db.fetchval("SELECT status FROM statements WHERE number = 'B-NOV'") == "closed"


async def test_a_network_operator_names_the_merchant(db, settings):
    w = await world(db)
    await add_user(db, "net@clickmint.example", "network")
    async with portal_client(settings) as client:
        csrf = await login(client, "net@clickmint.example")
        h = csrf_headers(csrf)
        path = f"/api/v1/admin/partners/{w.a_partner}/payout-details"
        missing = await client.put(path, json=DETAILS, headers=h)
        assert missing.status_code == 400 and missing.json()["detail"].startswith("merchant_id:")
        elsewhere = await client.put(path, params={"merchant_id": w.other_merchant_id}, json=DETAILS, headers=h)
        assert elsewhere.status_code == 404  # Alice is not in the other merchant's programme
        ok = await client.put(path, params={"merchant_id": w.merchant_id}, json=DETAILS, headers=h)
        assert ok.status_code == 200 and ok.json()["merchant_id"] == w.merchant_id
        made = await client.post(
            "/api/v1/admin/payout-batches", json={"period": "2026-11", "format": "paypal"}, headers=h
        )
        assert made.status_code == 400 and made.json()["detail"].startswith("merchant_id:")
