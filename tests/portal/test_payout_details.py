"""Payout and tax details through the portal API, on real PostgreSQL: a bad IBAN or VAT number is a 400
naming the field that writes nothing; a good change is stored sealed, shown masked, audited and mailed to the
partner; another merchant's operator can neither read nor change them."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from billing.payouts import sealed_where
from kernel.sealed import Sealer, SealError
from tests.conftest import TEST_SECRET
from tests.portal.kit import csrf_headers, login, portal_client, world

IBAN_DE = "DE89 3704 0044 0532 0130 00"
IBAN_FR = "FR14 2004 1010 0505 0001 3M02 606"


def details(**over: Any) -> dict[str, Any]:
    return {
        "legal_name": "Alice Media GmbH",
        "address": "Hauptstr. 1\n10115 Berlin",
        "country": "DE",
        "entity": "business",
        "method": "sepa",
        "iban": IBAN_DE,
        "vat_number": "DE136695976",
        **over,
    }


async def _state(db) -> tuple:
    return (
        await db.fetchval("SELECT count(*) FROM audit_log"),
        await db.fetchval("SELECT count(*) FROM outbox"),
        await db.fetchval(
            "SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM partner_payout_details x"
        ),
    )


async def test_partner_sets_details_sealed_masked_audited_and_mailed(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        response = await client.put(
            f"/api/v1/payout-details/{w.merchant_id}", json=details(), headers=csrf_headers(csrf)
        )
        assert response.status_code == 200, response.text
        shown = response.json()
        assert shown["iban"] == "DE•••3000" and shown["vat_number"] == "DE•••5976"
        listed = (await client.get("/api/v1/payout-details")).json()["programmes"]
    assert [p["merchant_id"] for p in listed if p["set"]] == [w.merchant_id]
    assert "DE89370400440532013000" not in str(listed)
    row = await db.fetchrow("SELECT * FROM partner_payout_details WHERE partner_id = $1", w.a_partner)
    assert b"DE89370400440532013000" not in row["iban_sealed"] and b"136695976" not in row["vat_sealed"]
    sealer = Sealer(TEST_SECRET)
    assert (
        sealer.open_text(row["iban_sealed"], sealed_where(w.merchant_id, w.a_partner, "iban"))
        == "DE89370400440532013000"
    )
    with pytest.raises(SealError):  # the sealed IBAN opens on its own row only
        sealer.open_text(row["iban_sealed"], sealed_where(w.merchant_id, w.b_partner, "iban"))
    with pytest.raises(SealError):  # and with its own key only
        Sealer("another-secret-" + "y" * 40).open_text(
            row["iban_sealed"], sealed_where(w.merchant_id, w.a_partner, "iban")
        )
    audit = await db.fetchrow("SELECT * FROM audit_log WHERE action = 'update_payout_details'")
    assert audit["merchant_id"] == w.merchant_id and audit["actor_email"] == "alice@p.example"
    assert "DE89370400440532013000" not in audit["detail"]
    mail = await db.fetchrow("SELECT * FROM outbox WHERE to_email = 'alice@p.example'")
    assert "DE•••3000" in mail["body"] and "DE89370400440532013000" not in mail["body"]


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"iban": "DE89 3704 0044 0532 0130 01"}, "iban", "checksum"),  # check digits wrong
        ({"iban": "XX00 1234"}, "iban", "country_code"),
        ({"iban": None}, "iban", None),  # SEPA needs one
        ({"bic": "NOTABIC!"}, "bic", "format"),
        ({"vat_number": "DE136695977"}, "vat_number", "checksum"),
        ({"vat_number": "FR40303265045"}, "vat_number", "format"),  # a valid French number is not a German one
        ({"country": "Germany"}, "country", None),
        ({"method": "paypal", "paypal_email": "not-an-address"}, "paypal_email", None),
        ({"method": "paypal", "paypal_email": "=cmd|x@evil.example"}, "paypal_email", None),  # a formula in the CSV
        ({"method": "cash"}, "method", None),
        ({"entity": "charity"}, "entity", None),
    ],
)
async def test_bad_values_are_refused_naming_the_field_and_write_nothing(db, settings, change, field, reason):
    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        first = await client.put(f"/api/v1/payout-details/{w.merchant_id}", json=details(), headers=csrf_headers(csrf))
        assert first.status_code == 200
        before = await _state(db)
        response = await client.put(
            f"/api/v1/payout-details/{w.merchant_id}", json=details(**change), headers=csrf_headers(csrf)
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_field"
    assert response.json()["detail"].startswith(f"{field}:")
    assert response.json().get("reason") == reason  # why the library refused it, as a machine code
    assert await _state(db) == before


async def test_a_changed_iban_is_audited_and_mailed_and_an_unchanged_save_is_not(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        await client.put(f"/api/v1/payout-details/{w.merchant_id}", json=details(), headers=csrf_headers(csrf))
        same = await client.put(f"/api/v1/payout-details/{w.merchant_id}", json=details(), headers=csrf_headers(csrf))
        assert same.status_code == 200
        assert await db.fetchval("SELECT count(*) FROM outbox") == 1
        changed = await client.put(
            f"/api/v1/payout-details/{w.merchant_id}", json=details(iban=IBAN_FR), headers=csrf_headers(csrf)
        )
    assert changed.status_code == 200 and changed.json()["iban"] == "FR•••2606"
    rows = await db.fetch("SELECT detail FROM audit_log WHERE action = 'update_payout_details' ORDER BY id")
    assert len(rows) == 2
    last = orjson.loads(rows[-1]["detail"])
    assert (
        last["changed"] == ["iban"] and last["before"]["iban"] == "DE•••3000" and last["after"]["iban"] == "FR•••2606"
    )
    mails = await db.fetch("SELECT body FROM outbox WHERE to_email = 'alice@p.example' ORDER BY id")
    assert len(mails) == 2 and "IBAN: FR•••2606" in mails[-1]["body"]


async def test_operator_edits_are_audited_and_another_merchants_operator_is_kept_out(db, settings):
    w = await world(db)
    path = f"/api/v1/admin/partners/{w.a_partner}/payout-details"
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        put = await client.put(
            path, json=details(method="paypal", iban=None, paypal_email="Pay@Alice.example"), headers=csrf_headers(csrf)
        )
        assert put.status_code == 200, put.text
        assert put.json()["paypal_email"] == "pay@alice.example"
        got = await client.get(path)
        assert got.status_code == 200 and got.json()["method"] == "paypal"
    audit = await db.fetchrow("SELECT actor_email, detail FROM audit_log WHERE action = 'update_payout_details'")
    assert audit["actor_email"] == "ops@shop-m.example" and '"by": "operator"' in audit["detail"]
    mail = await db.fetchval("SELECT body FROM outbox WHERE to_email = 'alice@p.example'")
    assert "an operator of Shop M (ops@shop-m.example)" in mail
    before = await _state(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@bbb.example")
        for method in ("GET", "PUT"):
            response = await client.request(
                method, path, json=details(iban=IBAN_FR) if method == "PUT" else None, headers=csrf_headers(csrf)
            )
            assert response.status_code == 404, response.text
            assert "alice" not in response.text.lower()
        # Bob is in both programmes: the other merchant's operator edits Bob's details for its own programme only.
        bob = await client.put(
            f"/api/v1/admin/partners/{w.b_partner}/payout-details",
            json=details(legal_name="Bob"),
            headers=csrf_headers(csrf),
        )
        assert bob.status_code == 200 and bob.json()["merchant_id"] == w.other_merchant_id
    assert (
        await db.fetchval(
            "SELECT count(*) FROM partner_payout_details WHERE partner_id = $1 AND merchant_id = $2",
            w.b_partner,
            w.merchant_id,
        )
        == 0
    )
    assert (await _state(db))[2] != before[2]
    assert await db.fetchval("SELECT paypal_email FROM partner_payout_details WHERE partner_id = $1", w.a_partner) == (
        "pay@alice.example"
    )


async def test_a_partner_names_only_programmes_that_approved_it(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        for method in ("GET", "PUT"):
            response = await client.request(
                method,
                f"/api/v1/payout-details/{w.other_merchant_id}",
                json=details() if method == "PUT" else None,
                headers=csrf_headers(csrf),
            )
            assert response.status_code == 404
    assert await db.fetchval("SELECT count(*) FROM partner_payout_details") == 0
