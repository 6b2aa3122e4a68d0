"""Issue 19 "Languages" without a browser: the page's language from the user's setting, the browser's
Accept-Language and the merchant's default; the setting on the profile page and its refusal."""

from __future__ import annotations

import datetime as dt
import re

from billing import statements as billing_statements
from portal import i18n
from tests.portal.kit import PASSWORD, portal_client, world

# English words the translated pages must not show once another language is chosen.
ENGLISH = ("Statements", "Sign out", "Dashboard", "Download", "Period", "Number", "No lines", "subtotal", "Offers")


def token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


async def sign_in(client, email: str, **headers: str) -> None:
    csrf = token((await client.get("/login", headers=headers)).text)
    signed = await client.post("/login", data={"email": email, "password": PASSWORD, "csrf_token": csrf})
    assert signed.status_code == 303


async def test_sign_in_page_speaks_the_browsers_language(db, settings):
    await world(db)
    async with portal_client(settings) as client:
        german = await client.get("/login", headers={"accept-language": "de-DE,de;q=0.9,en;q=0.5"})
        assert '<html lang="de"' in german.text and "Passwort vergessen?" in german.text
        assert "Forgot your password?" not in german.text
        polish = await client.get("/m/shop-m", headers={"accept-language": "pl"})
        assert "Program partnerski Shop M" in polish.text
        english = await client.get("/login", headers={"accept-language": "it"})
        assert '<html lang="en"' in english.text and "Forgot your password?" in english.text


async def test_the_users_setting_beats_the_browser_and_the_merchants_default(db, settings):
    w = await world(db)
    b_statement = w.ids["b_statement"]
    await db.execute("UPDATE merchants SET default_locale = 'fr' WHERE id = $1", w.merchant_id)
    async with portal_client(settings) as client:
        await sign_in(client, "bbb_secret@p.example")
        french = await client.get("/statements")  # no Accept-Language: the merchant's default
        assert '<html lang="fr"' in french.text and "Relevés" in french.text
        spanish = await client.get("/statements", headers={"accept-language": "es"})
        assert '<html lang="es"' in spanish.text and "Extractos" in spanish.text
        profile = await client.get("/profile")
        saved = await client.post(
            "/profile", data={"csrf_token": token(profile.text), "form": "language", "locale": "pl"}
        )
        assert saved.status_code == 303 and "J%C4%99zyk%20zapisany." in saved.headers["location"]
        assert await db.fetchval("SELECT locale FROM users WHERE id = $1", w.b_user) == "pl"
        polish = await client.get(f"/statements/{b_statement}", headers={"accept-language": "de"})
        assert '<html lang="pl"' in polish.text and "Zestawienie BBB_SECRET-1" in polish.text
        assert "1,00 USD" in polish.text  # the line of 100 minor units, written the Polish way
        for word in ENGLISH:
            assert word not in polish.text, word
        listing = await client.get("/statements")
        for word in ENGLISH:
            assert word not in listing.text, word
        back = await client.post("/profile", data={"csrf_token": token(profile.text), "form": "language", "locale": ""})
        assert back.status_code == 303
        assert await db.fetchval("SELECT locale FROM users WHERE id = $1", w.b_user) is None


async def test_the_statement_page_writes_its_issue_date_and_payment_terms_in_the_pages_language(db, settings):
    w = await world(db)
    b_statement = w.ids["b_statement"]
    await db.execute("UPDATE merchants SET payment_terms = 'Net 30.' WHERE id = $1", w.merchant_id)
    await db.execute("UPDATE statements SET min_payout_minor = 500000 WHERE id = $1", b_statement)
    rule = "Payable once closed when the total reaches the minimum payout of"
    async with portal_client(settings) as client:
        await sign_in(client, "bbb_secret@p.example")
        english = (await client.get(f"/statements/{b_statement}", headers={"accept-language": "en"})).text
        assert "not issued (open)" in english and f"Net 30. {rule} 5,000.00 USD;" in english
        german = (await client.get(f"/statements/{b_statement}", headers={"accept-language": "de"})).text
        assert "nicht ausgestellt (offen)" in german and "Net 30. Auszahlbar nach Abschluss" in german
        assert "5.000,00 USD" in german
        assert "not issued" not in german and rule not in german
        api = (await client.get(f"/api/v1/partner/statements/{b_statement}", headers={"accept-language": "de"})).json()
        assert api["issued"] == "not issued (open)" and api["payment_terms"].startswith(f"Net 30. {rule} 5000.00 USD")
        await billing_statements.close(db, b_statement, dt.datetime(2026, 12, 2, 9, 30, tzinfo=dt.UTC))
        polish = (await client.get(f"/statements/{b_statement}", headers={"accept-language": "pl"})).text
        closed_english = (await client.get(f"/statements/{b_statement}", headers={"accept-language": "en"})).text
    assert "2 Dec 2026" in closed_english
    assert "2 gru 2026" in polish and "Płatne po zamknięciu" in polish and "5\xa0000,00 USD" in polish
    assert "Dec 2026" not in polish and rule not in polish


async def test_an_unknown_language_is_refused_and_nothing_is_written(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        await sign_in(client, "alice@p.example")
        csrf = token((await client.get("/profile")).text)
        for bad in ("it", "EN", "de-DE", "x" * 300):
            refused = await client.post("/profile", data={"csrf_token": csrf, "form": "language", "locale": bad})
            assert refused.status_code == 400 and "must be one of en, es, fr, de, pl" in refused.text
        assert await db.fetchval("SELECT locale FROM users WHERE id = $1", w.a_user) is None
        no_csrf = await client.post("/profile", data={"form": "language", "locale": "de"})
        assert no_csrf.status_code == 403
        assert await db.fetchval("SELECT locale FROM users WHERE id = $1", w.a_user) is None


DASHBOARD_ENGLISH = (
    "Dashboard",
    "Your balance",
    "Key figures",
    "Unique clicks",
    "vs previous",
    "Trend",
    "By offer",
    "By country",
    "Showing",
    "Bots by reason",
    "Actions by name",
    "Sign out",
    "per day",
    "7 days",
    "This month",
)
HEADINGS = {"es": "Cifras clave", "fr": "Chiffres clés", "de": "Kennzahlen", "pl": "Kluczowe dane"}


async def test_the_dashboard_in_each_language_has_no_english_left(db, settings):
    await world(db)
    async with portal_client(settings) as client:
        await sign_in(client, "bbb_secret@p.example")
        english = await client.get("/dashboard")
        assert all(word in english.text for word in ("Key figures", "Your balance", "vs previous"))
        for lang, heading in HEADINGS.items():
            page = await client.get("/dashboard", headers={"accept-language": lang})
            assert page.status_code == 200 and f'<html lang="{lang}"' in page.text and heading in page.text
            for word in DASHBOARD_ENGLISH:
                assert word not in page.text, (lang, word)


OFFERS_ENGLISH = (
    "Offers open to you",
    "Programmes you can join",
    "Get a link",
    "See your link",
    "Paid in",
    "per click",
)
OFFERS_ENGLISH += ("of each sale", "hold", "days after the click", "Apply to", "optional")


async def test_the_offers_page_in_each_language_has_no_english_left(db, settings):
    w = await world(db)
    await db.execute(
        """UPDATE offers SET fee_plan = '{"cps_percent": "7.5", "cpc": 5}', hold_days = 14 WHERE id = $1""",
        w.ids["public_offer"],
    )
    async with portal_client(settings) as client:
        await sign_in(client, "alice@p.example")
        english = await client.get("/offers")
        assert "7.5 % of each sale + 0.05 USD per click, paid after a 14-day hold" in english.text
        german = await client.get("/offers", headers={"accept-language": "de"})
        assert "7,5 % jedes Verkaufs + 0,05 USD pro Klick, ausgezahlt nach 14 Tagen Sperrfrist" in german.text
        for lang in ("es", "fr", "de", "pl"):
            page = await client.get("/offers", headers={"accept-language": lang})
            assert page.status_code == 200 and f'<html lang="{lang}"' in page.text
            for word in OFFERS_ENGLISH:
                assert word not in page.text, (lang, word)


async def test_the_reset_mail_speaks_the_recipients_language_not_the_requesters(db, settings):
    from portal import users
    from tests.portal.kit import portal_settings

    w = await world(db)
    await db.execute("UPDATE users SET locale = 'de' WHERE id = $1", w.a_user)
    await db.execute("UPDATE merchants SET default_locale = 'es' WHERE id = $1", w.merchant_id)
    token = i18n.CURRENT.set("fr")  # whoever asked reads French; the mail follows the recipient
    try:
        await users.send_reset(db, portal_settings(settings), "alice@p.example")
        await users.send_reset(db, portal_settings(settings), "bbb_secret@p.example")  # no setting: merchant's
    finally:
        i18n.CURRENT.reset(token)
    mails = {r["to_email"]: r for r in await db.fetch("SELECT to_email, subject, body FROM outbox")}
    alice, bob = mails["alice@p.example"], mails["bbb_secret@p.example"]
    assert alice["subject"] == "Setzen Sie Ihr Clickmint-Passwort zurück" and "/reset?token=" in alice["body"]
    assert bob["subject"] == "Restablezca su contraseña de Clickmint" and "/reset?token=" in bob["body"]


async def test_an_operator_sets_its_merchants_default_language_and_nothing_else(db, settings):
    from tests.portal.kit import csrf_headers, login

    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "ops@shop-m.example")
        bad = await client.patch(
            f"/api/v1/admin/merchants/{w.merchant_id}", json={"default_locale": "it"}, headers=csrf_headers(csrf)
        )
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_field"
        assert await db.fetchval("SELECT default_locale FROM merchants WHERE id = $1", w.merchant_id) == "en"
        other = await client.patch(
            f"/api/v1/admin/merchants/{w.other_merchant_id}", json={"default_locale": "de"}, headers=csrf_headers(csrf)
        )
        assert other.status_code in (403, 404)
        assert await db.fetchval("SELECT default_locale FROM merchants WHERE id = $1", w.other_merchant_id) == "en"
        ok = await client.patch(
            f"/api/v1/admin/merchants/{w.merchant_id}", json={"default_locale": "pl"}, headers=csrf_headers(csrf)
        )
        assert ok.status_code == 200 and ok.json()["default_locale"] == "pl"
    async with portal_client(settings) as client:
        await sign_in(client, "alice@p.example")
        assert '<html lang="pl"' in (await client.get("/statements")).text  # no setting, no browser language


def visible(page: str) -> str:
    """What a reader sees of a page: its text between tags and the human-read attributes, not class names."""
    import html

    said = re.findall(r'(?:aria-label|alt|title|placeholder)="([^"]*)"', page)
    text = re.sub(r"<script.*?</script>|<style.*?</style>|<code>.*?</code>", " ", page, flags=re.S)
    return html.unescape("\n".join([*said, re.sub(r"<[^>]*>", "\n", text)]))


# English of the operator pages that must not be left once another language is chosen (none of them a word
# the four languages share with English, such as "Partner", "Status" or "Total").
OPERATOR_ENGLISH = (
    "Programme report",
    "By partner and offer",
    "Pending commission",
    "Clicks per day",
    "How partners earn",
    "Caps (optional)",
    "Percent of each sale",
    "Create offer",
    "Save offer",
    "every partner",
    "no caps",
    "window",
    "Give a partner its own terms",
    "Conversion pixel",
    "Rotate the secret",
    "All partners",
    "Invite a partner",
    "The partner marketplace",
    "No invitations yet",
    "Figures",
    "This month",
    "No traffic",
    "Add a note",
    "New link",
    "Upload a banner",
    "Wholesale price",
    "Currency rates",
    "Nothing yet",
    "Audit log",
    "Make a payout batch",
    "Your payout settings",
    "Held conversions",
    "Coupon code requests",
    "No loyalty programme yet",
    "Your account",
    "Default language",
    "As my browser asks",
    "Sign out",
    "active",
    "approved",
    "pending",
    "Why",
    "Edit",
    "Pause",
    "Suspend",
    "Reject",
    "Download",
    "Save",
)
PARTNERS_HEADING = {
    "es": "Todos los afiliados",
    "fr": "Tous les partenaires",
    "de": "Alle Partner",
    "pl": "Wszyscy partnerzy",
}


def _has(words: str, text: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(words)}(?!\w)", text) is not None


def operator_pages(w) -> list[str]:
    offer, partner = w.ids["public_offer"], w.a_partner
    return [
        "/admin",
        "/admin/offers",
        f"/admin/offers/{offer}",
        f"/admin/offers/{offer}/integration",
        "/admin/conversions",
        "/admin/partners",
        f"/admin/partners/{partner}",
        "/admin/links",
        "/admin/creatives",
        "/admin/products",
        "/admin/rates",
        "/admin/statements",
        "/admin/audit",
        "/admin/payouts",
        "/admin/holds",
        "/admin/loyalty",
        "/admin/account",
    ]


async def test_the_operator_pages_in_each_language_have_no_english_left(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        await sign_in(client, "ops@shop-m.example")
        english = ""
        for path in operator_pages(w):
            page = await client.get(path)
            assert page.status_code == 200 and '<html lang="en"' in page.text, path
            english += visible(page.text)
        # Every word the check looks for is on the English pages: the check can fail.
        assert [word for word in OPERATOR_ENGLISH if not _has(word, english)] == []
        for lang, heading in PARTNERS_HEADING.items():
            seen = ""
            for path in operator_pages(w):
                page = await client.get(path, headers={"accept-language": lang})
                assert page.status_code == 200 and f'<html lang="{lang}"' in page.text, (lang, path)
                text = visible(page.text)
                left = [word for word in OPERATOR_ENGLISH if _has(word, text)]
                assert left == [], (lang, path, left)
                seen += text
            assert heading in seen, lang


async def test_the_loyalty_page_in_each_language(db, settings):
    from billing import loyalty_ledger as ledger
    from tests.loyalty_kit import shop
    from tests.portal.kit import add_user

    prog = await shop(db, expiry_days=30)
    await add_user(db, "ops@shop.example", "operator", merchant_id=prog.merchant_id)
    await ledger.adjust(db, await ledger.programme_of(db, prog.merchant_id), "alice@x", 123_456, "gift", "test")
    english = ("Outstanding points by month of expiry", "points expire after", "Member since", "Adjust a balance")
    said = {
        "es": ("123.456", "Puntos pendientes por mes de caducidad"),
        "fr": ("123\u202f456", "Points en circulation par mois d'expiration"),
        "de": ("123.456", "Offene Punkte nach Verfallsmonat"),
        "pl": ("123\u00a0456", "Niewykorzystane punkty według miesiąca wygaśnięcia"),
    }
    async with portal_client(settings) as client:
        await sign_in(client, "ops@shop.example")
        page = await client.get("/admin/loyalty")
        assert all(words in page.text for words in english) and "123,456" in page.text
        for lang, (points, heading) in said.items():
            page = await client.get("/admin/loyalty", headers={"accept-language": lang})
            text = visible(page.text)
            assert points in text and heading in text, lang
            assert [words for words in english if words in text] == [], lang
        csrf = token(page.text)
        refused = await client.post(  # more points taken than the member has: billing's refusal, said in German
            "/admin/loyalty",
            data={"csrf_token": csrf, "customer": "alice@x", "points": "-200000", "reason": "x"},
            headers={"accept-language": "de"},
        )
        assert refused.status_code == 400
        assert "das Mitglied hat 123456 Punkte, 200000 wurden verlangt" in refused.text
        assert "Es gibt ein Problem" in refused.text


async def test_an_operator_chooses_its_language_on_its_account_page(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        await sign_in(client, "ops@shop-m.example", **{"accept-language": "pl"})
        page = await client.get("/admin/account", headers={"accept-language": "pl"})
        assert page.status_code == 200 and "Twoje konto" in page.text and 'id="f-locale"' in page.text
        csrf = token(page.text)
        for bad in ("it", "EN", "de-DE", "x" * 300):
            refused = await client.post(
                "/admin/account",
                data={"csrf_token": csrf, "form": "language", "locale": bad},
                headers={"accept-language": "pl"},
            )
            assert refused.status_code == 400 and 'aria-invalid="true"' in refused.text
            assert "musi być jednym z: en, es, fr, de, pl" in refused.text  # the refusal in the page's language
        assert await db.fetchval("SELECT locale FROM users WHERE id = $1", w.operator_user) is None
        no_csrf = await client.post("/admin/account", data={"form": "language", "locale": "de"})
        assert no_csrf.status_code == 403
        assert await db.fetchval("SELECT locale FROM users WHERE id = $1", w.operator_user) is None
        saved = await client.post("/admin/account", data={"csrf_token": csrf, "form": "language", "locale": "fr"})
        assert saved.status_code == 303 and "Langue%20enregistr%C3%A9e." in saved.headers["location"]
        assert await db.fetchval("SELECT locale FROM users WHERE id = $1", w.operator_user) == "fr"
        offers = await client.get("/admin/offers", headers={"accept-language": "de"})  # its setting beats the browser
        assert '<html lang="fr"' in offers.text and "Nouvelle offre" in offers.text
        back = await client.post("/admin/account", data={"csrf_token": csrf, "form": "language", "locale": ""})
        assert back.status_code == 303
        assert await db.fetchval("SELECT locale FROM users WHERE id = $1", w.operator_user) is None


async def test_an_operator_sets_its_merchants_default_language_on_its_account_page(db, settings):
    w = await world(db)
    form = {"form": "merchant_language", "merchant_id": str(w.merchant_id)}
    async with portal_client(settings) as client:
        await sign_in(client, "ops@shop-m.example")
        page = await client.get("/admin/account")
        assert "default language" in visible(page.text) and 'id="f-default_locale"' in page.text
        csrf = token(page.text)
        audited = await db.fetchval("SELECT count(*) FROM audit_log")
        for bad in ("it", "", "PL", "de-DE"):
            refused = await client.post("/admin/account", data={**form, "csrf_token": csrf, "default_locale": bad})
            assert refused.status_code == 400 and "must be one of en, es, fr, de, pl" in refused.text, bad
        other = await client.post(
            "/admin/account",
            data={**form, "csrf_token": csrf, "merchant_id": str(w.other_merchant_id), "default_locale": "de"},
        )
        assert other.status_code == 404
        assert await db.fetchval("SELECT count(*) FROM audit_log") == audited
        assert await db.fetch("SELECT default_locale FROM merchants ORDER BY id") == [("en",), ("en",)]
        saved = await client.post("/admin/account", data={**form, "csrf_token": csrf, "default_locale": "de"})
        assert saved.status_code == 303
        assert await db.fetchval("SELECT default_locale FROM merchants WHERE id = $1", w.merchant_id) == "de"
        assert await db.fetchval("SELECT default_locale FROM merchants WHERE id = $1", w.other_merchant_id) == "en"
        assert await db.fetchval("SELECT count(*) FROM audit_log WHERE action = 'update'") == 1
    async with portal_client(settings) as client:
        await sign_in(client, "alice@p.example")  # no setting of its own, no browser language: the merchant's
        assert '<html lang="de"' in (await client.get("/statements")).text


async def test_a_network_operator_picks_the_merchant_whose_default_language_it_sets(db, settings):
    from tests.portal.kit import add_user

    w = await world(db)
    await add_user(db, "net@network.example", "network")
    async with portal_client(settings) as client:
        await sign_in(client, "net@network.example")
        page = await client.get("/admin/account", headers={"accept-language": "es"})
        assert page.status_code == 200 and 'id="f-merchant_id"' in page.text
        assert f'<span data-default-locale="{w.other_merchant_id}">English</span>' in page.text
        data = {"csrf_token": token(page.text), "form": "merchant_language", "default_locale": "es"}
        missing = await client.post("/admin/account", data=data)  # which merchant: a network operator must say
        assert missing.status_code == 400
        saved = await client.post("/admin/account", data={**data, "merchant_id": str(w.other_merchant_id)})
        assert saved.status_code == 303
        assert await db.fetch("SELECT id, default_locale FROM merchants ORDER BY id") == [
            (w.merchant_id, "en"),
            (w.other_merchant_id, "es"),
        ]
        page = await client.get("/admin/account")
        assert f'<span data-default-locale="{w.other_merchant_id}">Español</span>' in page.text


async def test_the_fee_plan_editor_refuses_in_the_operators_language(db, settings):
    w = await world(db)
    await db.execute("UPDATE users SET locale = 'de' WHERE id = $1", w.operator_user)
    async with portal_client(settings) as client:
        await sign_in(client, "ops@shop-m.example")
        page = await client.get("/admin/offers")
        form = {"csrf_token": token(page.text), "name": "Winter", "destination_url": "https://shop.example/"}
        refused = await client.post("/admin/offers", data={**form, "m_cps": "true", "cps_percent": "viel"})
        assert refused.status_code == 400 and 'aria-invalid="true"' in refused.text
        assert "Es gibt ein Problem" in refused.text and "geben Sie einen Prozentsatz ein, z. B. 7.5" in refused.text
        assert 'value="viel"' in refused.text  # what was typed is kept
        made = await client.post("/admin/offers", data={**form, "m_cps": "true", "cps_percent": "7.5"})
        assert made.status_code == 303 and "Angebot%20Winter%20erstellt." in made.headers["location"]
    assert await db.fetchval("SELECT count(*) FROM offers WHERE name = 'Winter'") == 1
