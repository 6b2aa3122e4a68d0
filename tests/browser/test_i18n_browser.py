"""Issue 19 "Languages" in a real headless Chromium: a partner signs in with each of the five languages and
reads the dashboard, the offers and a statement in it, with no English left on those pages. Four languages
come from the browser's own locale (its Accept-Language); Polish is chosen on the profile page by a partner
whose browser asks for English."""

from __future__ import annotations

import re

import asyncpg

from clickmint.embedded import pick_port
from kernel.settings import Settings
from portal.app import build
from tests.browser.test_portal_browser import ARGS, CHROMIUM, DESKTOP_UA, pytestmark, serve  # noqa: F401
from tests.portal.kit import PASSWORD, add_user, portal_settings

# Words of the English pages that must not be left once another language is chosen.
ENGLISH = (
    "Dashboard",
    "Your balance",
    "Key figures",
    "vs previous",
    "Offers open to you",
    "Programmes you can join",
    "of each sale",
    "per click",
    "Statement lines",
    "Download",
    "Sign out",
    "Skip to content",
    "Partner portal by Clickmint",
)
# One heading per page and language: (dashboard, offers, statement).
SEEN = {
    "en": ("Key figures", "Offers open to you", "Statement CM-2026-11-EN"),
    "es": ("Cifras clave", "Ofertas abiertas para usted", "Extracto CM-2026-11-ES"),
    "fr": ("Chiffres clés", "Offres qui vous sont ouvertes", "Relevé CM-2026-11-FR"),
    "de": ("Kennzahlen", "Für Sie offene Angebote", "Abrechnung CM-2026-11-DE"),
    "pl": ("Kluczowe dane", "Oferty dostępne dla Ciebie", "Zestawienie CM-2026-11-PL"),
}
BROWSER_LOCALE = {"en": "en-US", "es": "es-ES", "fr": "fr-FR", "de": "de-DE", "pl": "en-GB"}
AMOUNT = {"en": "123.45 EUR", "es": "123,45 EUR", "fr": "123,45 EUR", "de": "123,45 EUR", "pl": "123,45 EUR"}


async def _world(db: asyncpg.Connection) -> tuple[int, dict[str, int]]:
    m = await db.fetchval("INSERT INTO merchants (slug, name, currency) VALUES ('sol', 'Sol Shop', 'EUR') RETURNING id")
    await db.execute(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, fee_plan, hold_days)
           VALUES ($1, 'Sol sale', 'https://sol.example/', 'EUR', '{"cps_percent": "8", "cpc": 5}', 14)""",
        m,
    )
    statements = {}
    for lang in SEEN:
        p = await db.fetchval(
            "INSERT INTO partners (name, email) VALUES ($1, $2) RETURNING id", f"P {lang}", f"{lang}@p.example"
        )
        await db.execute(
            "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')", p, m
        )
        await add_user(db, f"{lang}@p.example", "partner", partner_id=p, merchant_id=m)
        sid = await db.fetchval(
            """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
               VALUES ($3, $1, $2, 'EUR', '2026-11-01', '2026-12-01') RETURNING id""",
            m,
            p,
            f"CM-2026-11-{lang.upper()}",
        )
        await db.execute(
            """UPDATE statements SET status = 'closed', total_minor = 12345, payable = true, carried_out_minor = 0,
                                     closed_at = now() WHERE id = $1""",
            sid,
        )
        statements[lang] = sid
    return m, statements


async def test_each_language_signs_in_and_reads_its_pages(settings: Settings, db: asyncpg.Connection):
    from playwright.async_api import async_playwright

    _, statements = await _world(db)
    port = pick_port(0)
    core = Settings(**{**settings.__dict__, "portal_port": port})
    url = f"http://127.0.0.1:{port}"
    async with serve(build(portal_settings(core)), port), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for lang, (dashboard, offers, statement) in SEEN.items():
                context = await browser.new_context(user_agent=DESKTOP_UA, locale=BROWSER_LOCALE[lang])
                page = await context.new_page()
                await page.goto(f"{url}/login")
                await page.fill("input[name=email]", f"{lang}@p.example")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_url(f"{url}/dashboard")
                if lang == "pl":  # the browser asks for English: the partner chooses Polish on its profile
                    assert "Key figures" in await page.inner_text("main")
                    await page.goto(f"{url}/profile")
                    await page.select_option("#f-locale", "pl")
                    await page.click("#language button[type=submit]")
                    await page.wait_for_url(f"{url}/profile?**")
                    assert "Język zapisany." in await page.inner_text("main")
                    await page.goto(f"{url}/dashboard")
                shown = {}
                for path, heading in (("/dashboard", dashboard), ("/offers", offers)):
                    await page.goto(url + path)
                    shown[path] = await page.inner_text("body")
                    assert heading in shown[path], (lang, path)
                    assert await page.get_attribute("html", "lang") == lang
                await page.goto(f"{url}/statements")
                shown["statements"] = await page.inner_text("body")
                assert AMOUNT[lang] in shown["statements"], lang  # the closed total, written for the language
                await page.click(f"a:text('CM-2026-11-{lang.upper()}')")
                await page.wait_for_url(f"{url}/statements/{statements[lang]}")
                shown["statement"] = await page.inner_text("body")
                assert statement in shown["statement"], lang
                for where, text in shown.items():
                    if lang == "en":
                        continue
                    left = [word for word in ENGLISH if word in text]
                    assert not left, f"{lang} {where}: English left: {left}"
                await context.close()
        finally:
            await browser.close()


# Words of the English operator pages that must not be left in German.
OPERATOR_ENGLISH = (
    "Offers",
    "Partners",
    "Sign out",
    "How partners earn",
    "Create offer",
    "every partner",
    "All partners",
    "Invite a partner",
    "The partner marketplace",
    "Payout details",
    "Suspend",
    "approved",
    "active",
)


async def test_an_operator_reads_the_offers_and_partners_pages_in_german(settings: Settings, db: asyncpg.Connection):
    """An operator whose browser speaks German signs in and reads its offers and partners in German, the money
    and the terms written the German way."""
    from playwright.async_api import async_playwright

    m, _ = await _world(db)
    await add_user(db, "ops@sol.example", "operator", merchant_id=m)
    port = pick_port(0)
    core = Settings(**{**settings.__dict__, "portal_port": port})
    url = f"http://127.0.0.1:{port}"
    async with serve(build(portal_settings(core)), port), async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            context = await browser.new_context(user_agent=DESKTOP_UA, locale="de-DE")
            page = await context.new_page()
            await page.goto(f"{url}/login")
            await page.fill("input[name=email]", "ops@sol.example")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{url}/admin")
            await page.click("nav a:text('Angebote')")
            await page.wait_for_url(f"{url}/admin/offers")
            assert await page.get_attribute("html", "lang") == "de"
            offers = await page.inner_text("main")
            assert "Wie Partner verdienen" in offers and "Angebot erstellen" in offers
            assert "8 % jedes Verkaufs + 0,05 EUR pro Klick" in offers  # the offer's terms, written in German
            await page.click("nav a:text('Partner')")
            await page.wait_for_url(f"{url}/admin/partners")
            partners = await page.inner_text("main")
            assert "Alle Partner" in partners and "Partner einladen" in partners and "freigegeben" in partners
            assert "P de" in partners  # the partners of the programme are listed
            for where, text in (("offers", offers), ("partners", partners), ("nav", await page.inner_text("nav"))):
                left = [words for words in OPERATOR_ENGLISH if re.search(rf"(?<!\w){re.escape(words)}(?!\w)", text)]
                assert not left, f"{where}: English left: {left}"
            await context.close()
        finally:
            await browser.close()
