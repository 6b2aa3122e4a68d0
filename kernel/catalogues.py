"""gettext catalogues compiled in memory: a service's .po files read and compiled with Babel when it is
imported, so no .mo file is built or shipped (a plain `pip install -e .` is enough). See docs/i18n.md."""

from __future__ import annotations

import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

SUPPORTED = ("en", "es", "fr", "de", "pl")  # English has no catalogue: the msgids are the English text


def compile_po(path: Path, lang: str) -> gettext.NullTranslations:
    """The catalogue at `path` compiled into memory; no file there: no translation (the msgids as written)."""
    if not path.exists():
        return gettext.NullTranslations()
    with path.open("rb") as handle:
        catalog = read_po(handle, locale=lang)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)
