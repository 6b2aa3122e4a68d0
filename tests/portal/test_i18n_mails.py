"""Issue 19 "Languages", the mails: every mail through the outbox is in its recipient's language (its user's
setting, else the default of the merchant it is about, else English), never in the language of whoever caused
it; the notification a partner reads on the portal is in the page's language while its row stays English."""

from __future__ import annotations

from portal import i18n, mails, notifications
from tests.portal.kit import csrf_headers, login, portal_client, world
from tests.portal.test_operator_api import OFFER
from tests.portal.test_payout_details import IBAN_FR, details


async def outbox(db, email: str) -> list[dict]:
    return [dict(r) for r in await db.fetch("SELECT subject, body FROM outbox WHERE to_email = $1 ORDER BY id", email)]


async def test_the_mail_language_is_the_users_then_the_merchants_then_english(db):
    w = await world(db)
    await db.execute("UPDATE users SET locale = 'de' WHERE id = $1", w.a_user)
    await db.execute("UPDATE merchants SET default_locale = 'es' WHERE id = $1", w.merchant_id)
    await db.execute("UPDATE merchants SET default_locale = 'pl' WHERE id = $1", w.other_merchant_id)
    token = i18n.CURRENT.set("fr")  # whoever caused the mail reads French: it changes nothing
    try:
        assert await mails.language(db, "alice@p.example", w.other_merchant_id) == "de"  # the setting first
        assert await mails.language(db, "bbb_secret@p.example", w.other_merchant_id) == "pl"  # the mail's merchant
        assert await mails.language(db, "bbb_secret@p.example") == "es"  # else the user's own merchant
        assert await mails.language(db, "nobody@x.example", w.merchant_id) == "es"  # no user: the merchant's
        assert await mails.language(db, "nobody@x.example") == "en"
    finally:
        i18n.CURRENT.reset(token)


async def test_notifications_are_mailed_in_each_partners_language_and_shown_in_the_readers(db, settings):
    w = await world(db)
    await db.execute("UPDATE users SET locale = 'de' WHERE id = $1", w.a_user)
    await db.execute("UPDATE merchants SET default_locale = 'fr' WHERE id = $1", w.merchant_id)
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        made = await client.post("/api/v1/admin/offers", json=OFFER, headers=csrf_headers(csrf))
        assert made.status_code == 201, made.text
    alice, bob = await outbox(db, "alice@p.example"), await outbox(db, "bbb_secret@p.example")
    assert [m["subject"] for m in alice] == ["Neues Angebot von Shop M: Winter sale."]
    assert [m["subject"] for m in bob] == ["Nouvelle offre de Shop M : Winter sale."]
    assert bob[0]["body"] == "Nouvelle offre de Shop M : Winter sale.\n"
    await db.execute("UPDATE users SET merchant_id = NULL WHERE id = $1", w.b_user)  # no merchant of its own
    await notifications.notify(db, w.b_partner, "statement_ready", {"number": "BBB_SECRET-1"}, "/statements/1")
    assert (await outbox(db, "bbb_secret@p.example"))[-1]["subject"] == "Statement BBB_SECRET-1 is ready."
    await notifications.notify(db, w.a_partner, "statement_ready", {"number": "A-7"}, "/statements/2", w.merchant_id)
    assert (await outbox(db, "alice@p.example"))[-1]["subject"] == "Die Abrechnung A-7 ist fertig."
    # The rows keep the English (the JSON API's); the page says them in its reader's language.
    texts = await db.fetch("SELECT text FROM notifications WHERE partner_id = $1 ORDER BY id", w.a_partner)
    assert [r["text"] for r in texts] == ["New offer from Shop M: Winter sale.", "Statement A-7 is ready."]
    for lang, said in {
        "es": "El extracto A-7 está listo.",
        "pl": "Zestawienie A-7 jest gotowe.",
        "de": "Die Abrechnung A-7 ist fertig.",
    }.items():
        token = i18n.CURRENT.set(lang)
        try:
            shown = [n["text"] for n in await notifications.latest(db, w.a_partner, 10)]
        finally:
            i18n.CURRENT.reset(token)
        assert shown[0] == said
    assert notifications.shown("statement_ready", "Statement A-7 is rea") == "Statement A-7 is rea"  # cut short


async def test_an_approval_is_mailed_in_the_merchants_default_language(db, settings):
    w = await world(db)
    await db.execute("UPDATE partner_programmes SET status = 'applied' WHERE partner_id = $1", w.a_partner)
    await db.execute("UPDATE merchants SET default_locale = 'pl' WHERE id = $1", w.merchant_id)
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        done = await client.post(
            f"/api/v1/admin/partners/{w.a_partner}/status", json={"status": "approved"}, headers=csrf_headers(csrf)
        )
        assert done.status_code == 200, done.text
    assert [m["subject"] for m in await outbox(db, "alice@p.example")] == [
        "Shop M zatwierdził Cię: jego oferty są dla Ciebie dostępne."
    ]


async def test_an_invitation_is_mailed_in_the_invited_addresss_language(db, settings):
    w = await world(db)
    await db.execute("UPDATE merchants SET default_locale = 'es' WHERE id = $1", w.merchant_id)
    await db.execute("UPDATE users SET locale = 'fr' WHERE id = $1", w.b_user)
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        for email in ("carol@p.example", "bbb_secret@p.example"):
            made = await client.post(
                "/api/v1/admin/partners", json={"name": "X", "email": email}, headers=csrf_headers(csrf)
            )
            assert made.status_code == 201, made.text
    (carol,) = await outbox(db, "carol@p.example")  # nobody yet: the inviting merchant's language
    assert carol["subject"] == "Shop M le invita a su programa de afiliados"
    assert "Únase aquí en los próximos 14 días:" in carol["body"] and "/invitation?token=" in carol["body"]
    (bob,) = await outbox(db, "bbb_secret@p.example")  # a partner already: its own setting
    assert bob["subject"] == "Shop M vous invite à rejoindre son programme partenaire"
    assert "Rejoignez-le ici dans les 14 jours :" in bob["body"]


async def test_an_operator_account_for_a_taken_address_is_refused_by_mail_in_its_language(db, settings):
    w = await world(db)
    await db.execute("UPDATE users SET locale = 'pl' WHERE id = $1", w.a_user)
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        for email in ("alice@p.example", "bbb_secret@p.example"):
            done = await client.post(
                "/api/v1/admin/users", json={"email": email, "role": "operator"}, headers=csrf_headers(csrf)
            )
            assert done.status_code in (200, 201), done.text
    assert [m["subject"] for m in await outbox(db, "alice@p.example")] == ["Ktoś próbował dodać Cię do Clickmint"]
    (bob,) = await outbox(db, "bbb_secret@p.example")
    assert bob["subject"] == "Someone tried to add you to Clickmint" and "already has one" in bob["body"]


async def test_changed_payout_details_are_mailed_in_the_partners_language(db, settings):
    w = await world(db)
    await db.execute("UPDATE users SET locale = 'fr' WHERE id = $1", w.a_user)
    await db.execute("UPDATE merchants SET default_locale = 'de' WHERE id = $1", w.merchant_id)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        path = f"/api/v1/payout-details/{w.merchant_id}"
        assert (await client.put(path, json=details(), headers=csrf_headers(csrf))).status_code == 200
        changed = await client.put(path, json=details(iban=IBAN_FR), headers=csrf_headers(csrf))
        assert changed.status_code == 200
    first, second = await outbox(db, "alice@p.example")
    assert first["subject"] == second["subject"] == "Vos coordonnées de paiement pour Shop M ont changé"
    assert "ont été modifiées par vous le " in first["body"]
    assert "- Mode de paiement: Virement bancaire SEPA (EUR)" in first["body"]
    assert "- Entreprise ou particulier: une entreprise" in first["body"]
    assert second["body"].count("\n- ") == 1 and "- IBAN: FR•••2606" in second["body"]
    assert "contactez immédiatement le marchand" in second["body"]
    async with portal_client(settings) as client:  # an operator changes Bob's: Bob has no setting
        csrf = await login(client, "ops@shop-m.example")
        put = await client.put(
            f"/api/v1/admin/partners/{w.b_partner}/payout-details",
            json=details(method="paypal", iban=None, paypal_email="bob@pay.example"),
            headers=csrf_headers(csrf),
        )
        assert put.status_code == 200, put.text
    (bob,) = await outbox(db, "bbb_secret@p.example")
    assert bob["subject"] == "Ihre Auszahlungsdaten für Shop M wurden geändert"
    assert "von einem Betreiber von Shop M (ops@shop-m.example) geändert" in bob["body"]
    assert "- Auszahlungsart: PayPal" in bob["body"] and "- PayPal-Konto: bob@pay.example" in bob["body"]
