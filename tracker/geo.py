"""Country lookup from a MaxMind-format database, and IP anonymisation (IPv4 /24, IPv6 /48)."""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache

import maxminddb


class GeoError(ValueError):
    """The configured database cannot be opened."""


def anonymize_ip(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network address; "" for anything that is not an address."""
    try:
        packed = socket.inet_pton(socket.AF_INET, ip)
        return socket.inet_ntop(socket.AF_INET, packed[:3] + b"\0")
    except (OSError, ValueError):
        pass
    return _anonymize_other(ip)


@lru_cache(maxsize=4096)
def _anonymize_other(ip: str) -> str:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)


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
            record = self._reader.get(ip) if self._reader else None  # type: ignore[union-attr]
        except ValueError:
            return ""
        if not isinstance(record, dict):
            return ""
        for field in ("country", "registered_country"):
            value = record.get(field)
            if isinstance(value, dict) and isinstance(value.get("iso_code"), str):
                return value["iso_code"].upper()
        return ""

    def country(self, ip: str) -> str:  # replaced per instance in __init__
        return ""

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()


def _unknown(ip: str) -> str:
    return ""
