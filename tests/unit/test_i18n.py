"""Issue 19 "Languages": how the page's language is chosen, locale formats, and the catalogues' completeness.

Two guards keep the translated pages translated: every visible text of every template must sit in
`_()`/`{% trans %}` (a template scan with a small allowlist), and every string extracted from the templates
must have a non-empty translation in each language's .po."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from portal import formats, i18n, pages

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "portal" / "templates"
# Every template: each visible word must be translatable (a new page is checked the day it is added).
TRANSLATED = tuple(sorted(str(path.relative_to(TEMPLATES)) for path in TEMPLATES.rglob("*.html")))
# Words that are the same in every language: names, formats, symbols.
ALLOWED = {"Clickmint", "CSV", "PDF", "UTC", "PayPal", "px"}


@pytest.mark.parametrize(
    ("user", "browser", "merchant", "chosen"),
    [
        ("pl", "de-DE,de;q=0.9", "fr", "pl"),  # the user's own setting first
        (None, "de-DE,de;q=0.9", "fr", "de"),  # else the browser's
        (None, "it-IT,it;q=0.9", "fr", "fr"),  # the browser asks for nothing supported: the merchant's
        (None, None, "es", "es"),
        (None, None, None, "en"),
        ("xx", "", "zz", "en"),  # unknown values never get through
        (None, "en;q=0.1, es;q=0.8", None, "es"),  # q-values order the browser's wishes
        (None, "fr-CA", None, "fr"),  # a region falls back to its language
        (None, "de;q=0, pl", None, "pl"),  # q=0 is "not this one"
        (None, "de;q=abc", "pl", "pl"),  # a malformed q is ignored
    ],
)
def test_the_page_language_is_the_users_then_the_browsers_then_the_merchants(user, browser, merchant, chosen):
    assert i18n.choose(user, browser, merchant) == chosen


@pytest.mark.parametrize(
    ("locale", "value", "currency", "shown"),
    [
        ("en", 196500, "USD", "1,965.00 USD"),
        ("de", 196500, "EUR", "1.965,00 EUR"),
        ("es", -123456789, "EUR", "-1.234.567,89 EUR"),
        ("fr", 196500, "EUR", "1\u202f965,00 EUR"),
        ("pl", 12345678, "PLN", "123\u00a0456,78 PLN"),
        ("de", 1470, "JPY", "1.470 JPY"),
        ("de", 1234567, "KWD", "1.234,567 KWD"),
        ("de", "0.10", "EUR", "0,10 EUR"),
    ],
)
def test_money_is_written_for_the_locale_with_every_minor_digit(locale, value, currency, shown):
    assert formats.money(value, currency, locale=locale) == shown


def test_money_follows_the_pages_locale():
    token = i18n.CURRENT.set("de")
    try:
        assert formats.money(196500, "EUR") == "1.965,00 EUR"
        assert formats.percent(31, 1000) == "3,1 %"
    finally:
        i18n.CURRENT.reset(token)
    assert formats.money(196500, "EUR") == "1,965.00 EUR"


@pytest.mark.parametrize(
    ("locale", "start", "end", "said"),
    [
        ("de", "2026-12-01", "2027-01-01", "Dezember 2026"),
        ("es", "2026-12-01", "2027-01-01", "diciembre de 2026"),
        ("pl", "2026-12-01", "2027-01-01", "grudzień 2026"),
        ("fr", "2026-12-01", "2026-12-08", "1\u20137 déc. 2026"),
        ("de", "2026-12-01", "2026-12-08", "1.\u20137. Dez. 2026"),
        ("de", "2026-11-28", "2026-12-05", "28. Nov.\u2009\u2013\u20094. Dez. 2026"),
        ("pl", "2026-12-07", "2026-12-08", "7 gru 2026"),
    ],
)
def test_periods_are_written_in_the_locale(locale, start, end, said):
    assert formats.period(start, end, locale=locale) == said


def _visible_text(source: str) -> list[str]:
    """What a template shows that is not produced by an expression: text between tags, and the
    human-read attributes (aria-label, alt, title, placeholder) written literally."""
    found = re.findall(r'(?:aria-label|alt|title|placeholder)="([^"{]*[A-Za-z][^"{]*)"', source)
    text = re.sub(r"\{#.*?#\}", " ", source, flags=re.S)
    text = re.sub(r"\{%.*?%\}", " ", text, flags=re.S)
    text = re.sub(r"\{\{.*?\}\}", " ", text, flags=re.S)
    text = re.sub(r"<style>.*?</style>|<script.*?</script>", " ", text, flags=re.S)
    text = re.sub(r"<[^>]*>", "\n", text)
    for chunk in text.split("\n"):
        chunk = re.sub(r'[\w-]+="[^"]*"', " ", chunk)  # attributes a macro writes into the tag it is called in
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z'-]*", chunk) if w not in ALLOWED]
        if words:
            found.append(chunk.strip())
    return found


@pytest.mark.parametrize("name", TRANSLATED)
def test_translated_templates_show_no_text_outside_trans(name):
    assert _visible_text((TEMPLATES / name).read_text()) == []


def test_the_scan_catches_untranslated_text():
    assert _visible_text('<h1>{{ _("Offers") }}</h1><p>Hello {{ name }}</p>') == ["Hello"]
    assert _visible_text('<nav aria-label="Main">') == ["Main"]
    assert _visible_text('<p>{{ _("x") }} · CSV</p>') == []
    assert _visible_text('{% if err %} aria-invalid="true"{% endif %}') == []
    assert _visible_text('{% if err %} aria-invalid="true" Wrong{% endif %}') == ["Wrong"]


@functools.cache
def _template_messages() -> frozenset[str | tuple[str, ...]]:
    """Every string marked in the templates, and in the portal's Python (page titles, column headers, notices,
    form messages: gettext_, N_, ngettext_), as docs/i18n.md's extract command finds them."""
    method_map = [("**.html", "jinja2")]
    options = {"**.html": {"extensions": "jinja2.ext.i18n"}}
    out: set[str | tuple[str, ...]] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(TEMPLATES), method_map, options, keywords={"_": None, "gettext": None, "ngettext": (1, 2)}
    ):
        out.add(message)
    python = {"_": None, "gettext": None, "gettext_": None, "N_": None, "ngettext": (1, 2), "ngettext_": (1, 2)}
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT / "portal"), [("**.py", "python")], keywords=python
    ):
        out.add(message)
    return frozenset(out)


@pytest.mark.parametrize("lang", [lang for lang in i18n.SUPPORTED if lang != "en"])
def test_each_catalogue_translates_every_page_string(lang):
    path = i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"
    catalog = read_po(path.open("rb"), locale=lang)
    missing = []
    for message in sorted(_template_messages(), key=str):
        entry = catalog.get(message)
        strings = entry.string if entry is not None else None
        if entry is None or "fuzzy" in entry.flags or not (all(strings) if isinstance(strings, tuple) else strings):
            missing.append(message)
    assert missing == [], f"{lang}: run the update in docs/i18n.md and translate these"


def test_placeholders_survive_translation():
    for lang in i18n.SUPPORTED[1:]:  # English is the msgids themselves: it has no catalogue
        catalog = read_po((i18n.LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po").open("rb"), locale=lang)
        for entry in catalog:
            if not entry.id:
                continue
            ids = entry.id if isinstance(entry.id, tuple) else (entry.id,)
            strings = entry.string if isinstance(entry.string, tuple) else (entry.string,)
            wanted = set(re.findall(r"%\(\w+\)[sd]", ids[-1]))
            for s in strings:
                assert set(re.findall(r"%\(\w+\)[sd]", s)) == wanted, (lang, entry.id, s)


def test_pages_render_in_the_chosen_language():
    template = pages.TEMPLATES.get_template("login.html")
    values = {"brand": pages.DEFAULT_BRAND, "csrf": "t", "next": "", "who": None, "error": None, "notice": None}
    values.update(failed=None, request_path="", unread=0)
    seen = {}
    for lang in i18n.SUPPORTED:
        token = i18n.CURRENT.set(lang)
        try:
            seen[lang] = template.render(**values)
        finally:
            i18n.CURRENT.reset(token)
    assert 'lang="en"' in seen["en"] and "Forgot your password?" in seen["en"]
    assert 'lang="de"' in seen["de"] and "Passwort vergessen?" in seen["de"]
    assert "Zaloguj się do Clickmint" in seen["pl"] and "Mot de passe" in seen["fr"] and "Contraseña" in seen["es"]


@pytest.mark.parametrize(
    ("balance", "said"),
    [(1, "1 punkt"), (2, "2 punkty"), (5, "5 punktów"), (12, "12 punktów"), (22, "22 punkty"), (1234, "1234 punkty")],
)
def test_polish_points_take_each_plural_form(balance, said):
    import datetime as dt

    summary = {"balance": balance, "pending": 0, "tier": None, "tier_progress": None, "next_expiry": None}
    summary["history"] = [{"occurred_at": dt.datetime(2026, 12, 7, 10, tzinfo=dt.UTC), "kind": "earn", "reason": None}]
    summary["history"][0]["points"] = balance
    values = {"brand": pages.DEFAULT_BRAND, "csrf": None, "who": None, "error": None, "notice": None, "failed": None}
    values.update(request_path="", unread=0, m=summary, kinds={"earn": "Zdobyte"}, value="1,00 USD")
    token = i18n.CURRENT.set("pl")
    try:
        html = pages.TEMPLATES.get_template("loyalty/member.html").render(**values)
    finally:
        i18n.CURRENT.reset(token)
    assert f"<b>{said}</b>" in html.replace("\u00a0", "")  # 1 234: Polish groups thousands with a space
    assert "Twoje punkty" in html and "7 gru 2026" in html and "Your points" not in html
