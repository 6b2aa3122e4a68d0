"""Issue 19 "Languages" without a browser, the rest of what a partner reads: links, banners, orders,
postbacks, prices, notifications, coupons, payout details and the signed-out pages with no English left in
each language, and refusals on those pages in the page's language."""

from __future__ import annotations

from portal import formats
from tests.portal.kit import portal_client, world
from tests.portal.test_i18n_pages import ENGLISH, sign_in, token

# The rest of what a partner reads: each page with words that are there in English, and gone in every language.
PARTNER_PAGES = {
    "/links": (
        "Your tracking links",
        "Link builder",
        "Links by offer",
        "Click URL:",
        "Text link to paste",
        "View pixel",
    ),
    "/orders": ("Orders and actions", "Your commission", "Customers you referred", "First seen", ">pending<"),
    "/postbacks": (
        "Your postbacks",
        "Signing secret",
        "Delete this postback",
        "Add a postback",
        "actions and purchases",
    ),
    "/prices": ("Your store prices", "Wholesale", "Your price", "Set a new price", "Price feeds"),
    "/notifications": ("Mark all as read", "New:", "is ready", "approved you", "New offer from"),
    "/coupons": ("Coupon codes", "Held conversions", "Nothing held", "No codes yet", "Uses credited"),
    "/creatives": ("Banners the merchants uploaded", "each view is counted", ">Get a banner link<"),
    "/payout-details": ("Each programme pays you", "Paid by", "SEPA transfer", ">Change<"),
    "/payout-details/{merchant}": ("Payout and tax details", "Legal name", "You are", "a business", "leave empty"),
}
UNTIL = {"es": "hasta el", "fr": "jusqu'au", "de": "bis", "pl": "do"}
PARTNER_PAGES_SAID = {
    "es": ("Sus enlaces de seguimiento", "El extracto BBB_SECRET-1 está listo.", "transferencia SEPA al IBAN"),
    "fr": ("Vos liens de suivi", "Le relevé BBB_SECRET-1 est prêt.", "virement SEPA sur l'IBAN"),
    "de": ("Ihre Tracking-Links", "Die Abrechnung BBB_SECRET-1 ist fertig.", "SEPA-Überweisung auf IBAN"),
    "pl": ("Twoje odnośniki śledzące", "Zestawienie BBB_SECRET-1 jest gotowe.", "przelew SEPA na IBAN"),
}


async def test_the_rest_of_the_partners_pages_have_no_english_left_in_each_language(db, settings):
    from portal import notifications
    from tests.portal.kit import csrf_headers, login
    from tests.portal.test_payout_details import details

    w = await world(db)
    await notifications.notify(db, w.b_partner, "statement_ready", {"number": "BBB_SECRET-1"}, "/statements/1")
    await notifications.notify(db, w.b_partner, "approved", {"merchant": "Shop M"}, "/offers")
    await notifications.notify(db, w.b_partner, "new_offer", {"merchant": "Shop M", "offer": "Lamps"}, "/offers")
    async with portal_client(settings) as client:
        csrf = await login(client, "bbb_secret@p.example")
        path = f"/api/v1/payout-details/{w.merchant_id}"
        assert (await client.put(path, json=details(), headers=csrf_headers(csrf))).status_code == 200
    pages = {path.format(merchant=w.merchant_id): words for path, words in PARTNER_PAGES.items()}
    hold = (await db.fetchval("SELECT hold_until FROM conversions WHERE partner_id = $1", w.b_partner)).date()
    async with portal_client(settings) as client:
        await sign_in(client, "bbb_secret@p.example")
        for path, words in pages.items():
            english = await client.get(path)
            assert english.status_code == 200, path
            for word in words:
                assert word in english.text, (path, word)  # so that its absence below means something
        for lang, said in PARTNER_PAGES_SAID.items():
            seen = ""
            for path, words in pages.items():
                page = await client.get(path, headers={"accept-language": lang})
                assert page.status_code == 200 and f'<html lang="{lang}"' in page.text, (lang, path)
                for word in (*words, *ENGLISH):
                    assert word not in page.text, (lang, path, word)
                seen += page.text
            assert all(words in seen for words in said), lang
            held = formats.period(hold, hold, inclusive=True, locale=lang)  # the pending order's hold, its way
            assert f">{UNTIL[lang]} {held}<" in seen, lang
    assert await db.fetchval("SELECT count(*) FROM notifications WHERE text LIKE 'Statement % is ready.'") == 1


async def test_the_signed_out_pages_speak_the_browsers_language(db, settings):
    await world(db)
    english_words = ("Reset your password", "Send me a link", "Set a password", "New password", "Join a partner")
    async with portal_client(settings) as client:
        english = "".join(
            [(await client.get(p)).text for p in ("/forgot", "/reset?token=x", "/invitation?token=nothing")]
        )
        assert all(word in english for word in english_words[:4])
        for lang, heading in {"es": "Restablezca", "fr": "Réinitialisez", "de": "Passwort", "pl": "Zresetuj"}.items():
            headers = {"accept-language": lang}
            forgot = await client.get("/forgot", headers=headers)
            reset = await client.get("/reset?token=x", headers=headers)
            invitation = await client.get("/invitation?token=nothing", headers=headers)
            assert heading in forgot.text and f'<html lang="{lang}"' in reset.text
            for word in english_words:
                assert word not in forgot.text + reset.text + invitation.text, (lang, word)


async def test_refusals_on_the_partners_pages_are_in_the_pages_language(db, settings):
    from tests.portal.test_payout_pages import FORM

    w = await world(db)
    async with portal_client(settings) as client:
        await sign_in(client, "bbb_secret@p.example")
        csrf = token((await client.get("/prices")).text)
        price = {"merchant_id": str(w.other_merchant_id), "sku": "BBB-SKU", "retail": "1.00", "csrf_token": csrf}
        english = await client.post("/prices", data=price)
        assert (
            english.status_code == 400 and "the retail price must be at least the wholesale price 5.00" in english.text
        )
        german = await client.post("/prices", data=price, headers={"accept-language": "de"})
        assert german.status_code == 400
        assert "der Verkaufspreis muss mindestens dem Großhandelspreis 5.00 USD entsprechen" in german.text
        assert "the retail price" not in german.text and "Es gibt ein Problem" in german.text
        path = f"/payout-details/{w.merchant_id}"
        spanish = await client.post(path, data={**FORM, "csrf_token": csrf}, headers={"accept-language": "es"})
        assert spanish.status_code == 400
        assert "IBAN: no es un IBAN válido (los dígitos de control son incorrectos)" in spanish.text
        assert "is not a valid" not in spanish.text and "Invalid checksum digits" not in spanish.text
        vat = {**FORM, "iban": "DE89 3704 0044 0532 0130 00", "vat_number": "DE12345678", "csrf_token": csrf}
        german_vat = await client.post(path, data=vat, headers={"accept-language": "de"})
        assert german_vat.status_code == 400
        assert "ist keine gültige USt-IdNr. für DE (sie hat die falsche Anzahl an Zeichen)" in german_vat.text
        assert "The number has an invalid length." not in german_vat.text
        short_bic = {**vat, "vat_number": "", "bic": "XYZ"}
        french_bic = await client.post(path, data=short_bic, headers={"accept-language": "fr"})
        assert french_bic.status_code == 400 and "il n&#39;a pas le bon nombre de caractères" in french_bic.text
        assert "Invalid length" not in french_bic.text
        api = await client.put(
            f"/api/v1/payout-details/{w.merchant_id}",
            json={k: v for k, v in vat.items() if k != "csrf_token" and v != ""},
            headers={"accept-language": "de", "x-csrf-token": csrf},
        )
        assert api.status_code == 400 and api.json()["error"] == "invalid_field"
        assert api.json()["detail"] == "vat_number: is not a valid DE VAT number (The number has an invalid length.)"
        missing = await client.post(
            path, data={**FORM, "iban": "", "csrf_token": csrf}, headers={"accept-language": "pl"}
        )
        assert missing.status_code == 400 and "IBAN: jest wymagany do przelewu bankowego SEPA" in missing.text
    assert await db.fetchval("SELECT count(*) FROM partner_payout_details") == 0
    async with portal_client(settings) as client:  # signed out: the browser's language
        csrf = token((await client.get("/forgot")).text)
        french = await client.post(
            "/forgot", data={"email": "not an address", "csrf_token": csrf}, headers={"accept-language": "fr"}
        )
        assert french.status_code == 400 and "email: n&#39;est pas une adresse e-mail" in french.text
        expired = await client.post(
            "/reset", data={"token": "x", "password": "y" * 12}, headers={"accept-language": "de"}
        )
        assert "das Formular ist abgelaufen; laden Sie die Seite neu" in expired.text
        stale = await client.get("/invitation?token=nothing", headers={"accept-language": "pl"})
        assert "odnośnik zaproszenia jest nieprawidłowy, wykorzystany, wycofany lub wygasł" in stale.text
