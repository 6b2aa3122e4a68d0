"""Which language a page is in, and its translations.

The locale is the user's setting (users.locale), else the browser's Accept-Language, else the merchant's
default (merchants.default_locale), else English. Catalogues are gettext .po files under
portal/locale/<lang>/LC_MESSAGES/messages.po, compiled into memory when the portal starts (no .mo files
to build or ship, so `pip install -e .` from a clean clone is enough). See docs/i18n.md."""

from __future__ import annotations

import gettext
import re
from contextvars import ContextVar
from pathlib import Path

from babel import Locale

from kernel.catalogues import SUPPORTED, compile_po

DEFAULT = "en"
NAMES = {"en": "English", "es": "Español", "fr": "Français", "de": "Deutsch", "pl": "Polski"}  # each in itself
LOCALE_DIR = Path(__file__).parent / "locale"
CURRENT: ContextVar[str] = ContextVar("locale", default=DEFAULT)


def accepted(header: str | None) -> str | None:
    """The first supported language the browser asks for, by its q-values: "pl-PL,pl;q=0.9,en;q=0.5" -> "pl"."""
    if not header:
        return None
    wanted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                continue
        if tag and q > 0:
            wanted.append((-q, index, tag.strip()))
    tags = [tag.replace("_", "-") for _, _, tag in sorted(wanted)]
    found = Locale.negotiate(tags, list(SUPPORTED), sep="-")
    return str(found.language) if found else None


def choose(user_locale: str | None, accept_language: str | None, merchant_default: str | None) -> str:
    """The user's setting, else the browser's Accept-Language, else the merchant's default, else English."""
    if user_locale in SUPPORTED:
        return user_locale
    browser = accepted(accept_language)
    if browser:
        return browser
    if merchant_default in SUPPORTED:
        return merchant_default
    return DEFAULT


def _load(lang: str) -> gettext.NullTranslations:
    return compile_po(LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po", lang)


TRANSLATIONS: dict[str, gettext.NullTranslations] = {lang: _load(lang) for lang in SUPPORTED}


def translations(lang: str | None = None) -> gettext.NullTranslations:
    return TRANSLATIONS.get(lang or CURRENT.get(), TRANSLATIONS[DEFAULT])


def N_(message: str) -> str:
    """gettext's marker: extracted into the catalogues, translated later on display (gettext_)."""
    return message


def gettext_(message: str) -> str:
    return translations().gettext(message)


def ngettext_(singular: str, plural: str, n: int) -> str:
    return translations().ngettext(singular, plural, n)


def pgettext_(context: str, message: str) -> str:
    return translations().pgettext(context, message)


def npgettext_(context: str, singular: str, plural: str, n: int) -> str:
    return translations().npgettext(context, singular, plural, n)


def reading(message: str) -> re.Pattern[str]:
    """An English message with %(name)s placeholders as a pattern that reads its values back out of the text it
    made: "Statement %(number)s is ready." matches "Statement S-1 is ready." with number="S-1". For the words
    written in English once (a stored notification, an API refusal) and said again in the reader's language."""
    parts = re.split(r"%\((\w+)\)[sd]", message)
    body = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.+?)" for i, part in enumerate(parts))
    return re.compile(body + r"\Z", re.S)
