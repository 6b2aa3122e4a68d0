"""Typed readers of CLICKMINT_* environment variables that fail fast and name the variable."""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

PREFIX = "CLICKMINT_"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what is wrong."""


class Env:
    """Reads one mapping (the process environment by default) and validates each value."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def raw(self, name: str) -> str | None:
        value = self._environ.get(PREFIX + name)
        return None if value is None or value.strip() == "" else value.strip()

    def str(self, name: str, default: str) -> str:
        value = self.raw(name)
        return default if value is None else value

    def int(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        lo: builtins.int | None = None,
        hi: builtins.int | None = None,
    ) -> builtins.int:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = int(value, 10)
        except ValueError:
            raise SettingsError(f"{PREFIX}{name}={value!r} is not a whole number") from None
        if (lo is not None and number < lo) or (hi is not None and number > hi):
            raise SettingsError(f"{PREFIX}{name}={number} is out of range [{lo}, {hi}]")
        return number

    def port(self, name: builtins.str, default: builtins.int) -> builtins.int:
        return self.int(name, default, lo=1, hi=65535)

    def bool(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{PREFIX}{name}={value!r} is not a boolean (use true or false)")

    def choice(self, name: builtins.str, default: builtins.str, choices: tuple[builtins.str, ...]) -> builtins.str:
        value = self.str(name, default).lower()
        if value not in choices:
            raise SettingsError(f"{PREFIX}{name}={value!r} must be one of {', '.join(choices)}")
        return value

    def url(self, name: builtins.str, schemes: tuple[builtins.str, ...]) -> builtins.str | None:
        value = self.raw(name)
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            raise SettingsError(
                f"{PREFIX}{name} must be a URL with scheme {' or '.join(schemes)}, got {parts.scheme!r}"
            )
        if not parts.hostname and not parts.path and "host=" not in parts.query:
            raise SettingsError(f"{PREFIX}{name} names no host")
        return value


def redact(url: str | None) -> str:
    """A URL with its password replaced, for printing."""
    if not url:
        return "(embedded)"
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(":" + parts.password + "@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url
