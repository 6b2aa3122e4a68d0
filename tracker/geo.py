"""Country lookup from a MaxMind-format database, and IP anonymisation (IPv4 /24, IPv6 /48)."""

from __future__ import annotations

from functools import lru_cache

import maxminddb


class GeoError(ValueError):
    """The configured database cannot be opened."""


class GeoLookup:
    """ISO country codes by address; with no database every answer is "" (unknown)."""

    def __init__(self, path: str | None) -> None:
        self._reader = None
        if path:
            try:
                self._reader = maxminddb.open_database(path, maxminddb.MODE_AUTO)
            except (OSError, maxminddb.InvalidDatabaseError, ValueError) as exc:
                raise GeoError(f"cannot open the GeoIP database {path}: {exc}") from exc
        self.country = lru_cache(maxsize=65536)(self._country) if self._reader else _unknown  # type: ignore[method-assign]

    def _country(self, ip: str) -> str:
        if ip[:7].lower() == "::ffff:" and "." in ip:  # an IPv4-mapped address is looked up as IPv4
            ip = ip[7:]
        try:
            record = self._reader.get(ip) if self._reader else None
        except ValueError:
            return ""
        if not isinstance(record, dict):
            return ""
        for field in ("country", "registered_country"):
            value = record.get(field)
            if isinstance(value, dict) and isinstance(code := value.get("iso_code"), str):
                return code.upper()
        return ""

    def country(self, ip: str) -> str:  # replaced per instance in __init__
        return ""

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def _unknown(ip: str) -> str:
    return ""
