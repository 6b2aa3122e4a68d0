"""The one HTTP-aware constructor: what the tracker needs to know about a request, read from the ASGI scope.

Who the visitor is, one definition for the whole tracker:
- the **address** is the client's IPv4 address, or the /64 network of its IPv6 address (one subscriber's
  line or phone gets a whole /64 and may change addresses inside it at will);
- **uniqueness** is per address and user agent: two browsers behind one address are two people;
- **bursts** are per address alone: rotating user agents cannot hide one (kernel/redis/scripts.py counts them).
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import Scope

from kernel.addresses import NO_PROXIES, TrustedProxies

MAX_QUERY_BYTES = 4096
MAX_PARAM_CHARS = 255
MAX_FIELDS = 64
_LONG_PARAMS = frozenset(("url", "items"))  # a deep link and a pixel's basket may use the whole query


@dataclass(slots=True)
class Visit:
    method: str
    path: str
    query: dict[str, str]
    user_agent: str
    purpose: str  # Sec-Purpose / Purpose / X-Purpose / X-Moz, joined
    cookies: str  # the raw Cookie header; parsed only when a handler needs it
    client_ip: str  # the full address: used for geo and the visitor hash, never stored or logged
    https: bool
    query_error: str | None  # set when the query string is refused (too long, not UTF-8)
    if_none_match: bytes = b""  # a banner's ETag the browser already holds
    referer: bytes = b""  # the Referer header, for an offer's forbidden-referrer rule (billing/fraud.py)
    accept_language: str = ""  # for smart links' language rules (tracker/smartlinks.py)
    _visitor: str | None = None
    _address: str | None = None

    def cookie(self, name: str) -> str | None:
        """One cookie's value, without parsing the others."""
        if not self.cookies:
            return None
        prefix = name + "="
        for part in self.cookies.split(";"):
            part = part.strip()
            if part.startswith(prefix):
                return part[len(prefix) :]
        return None

    def visitor(self, key: bytes) -> str:
        """A keyed hash of address and user agent, whose click is unique or not: stable, reveals neither."""
        cached = self._visitor
        if cached is None:
            hasher = _keyed(key)
            hasher.update(f"{visitor_address(self.client_ip)}|{self.user_agent}".encode())
            cached = self._visitor = hasher.hexdigest()
        return cached

    def address(self, key: bytes) -> str:
        """A keyed hash of the address alone, whose hits are counted for bursts: stable, does not reveal it."""
        cached = self._address
        if cached is None:
            hasher = _keyed(key)
            hasher.update(visitor_address(self.client_ip).encode())
            cached = self._address = hasher.hexdigest()
        return cached


def visitor_address(ip: str) -> str:
    """The address a visitor is known by: an IPv4 address as it is, an IPv6 one as its /64 network."""
    return ip if ":" not in ip else _ipv6_network(ip)


@lru_cache(maxsize=4096)
def _ipv6_network(ip: str) -> str:
    try:
        address = ipaddress.IPv6Address(ip)
    except ValueError:
        return ip  # not an address (a proxy's header can hold anything): known by what it says
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address.packed[:8] + bytes(8), 64)).network_address) + "/64"


def _keyed(key: bytes) -> Any:
    keyed = _KEYED.get(key)
    if keyed is None:  # keying BLAKE2b costs more than hashing one visit: keyed once, copied per visit
        keyed = _KEYED[key] = hashlib.blake2b(key=key[:64], digest_size=12)
    return keyed.copy()


_KEYED: dict[bytes, Any] = {}  # the service key -> its keyed BLAKE2b state


# The request headers we read, by lower-case name; a dict lookup skips the others (browsers send ~10) in one step.
_UA, _COOKIE, _PURPOSE, _IF_NONE_MATCH, _FORWARDING, _FORWARDED_PROTO, _REFERER, _ACCEPT_LANGUAGE = range(8)
_WANTED: dict[bytes, int] = {
    b"user-agent": _UA,
    b"cookie": _COOKIE,
    b"sec-purpose": _PURPOSE,
    b"purpose": _PURPOSE,
    b"x-purpose": _PURPOSE,
    b"x-moz": _PURPOSE,
    b"if-none-match": _IF_NONE_MATCH,
    b"x-forwarded-for": _FORWARDING,
    b"forwarded": _FORWARDING,
    b"x-forwarded-proto": _FORWARDED_PROTO,
    b"referer": _REFERER,
    b"accept-language": _ACCEPT_LANGUAGE,
}


def from_scope(scope: Scope, proxies: TrustedProxies = NO_PROXIES) -> Visit:
    """Read method, path, query, the few headers we use, the client address and the scheme.

    Forwarding headers are kept only when proxies are configured, and parsed only when the peer is one
    of them (kernel/addresses.py): a direct request costs nothing more than before.
    """
    user_agent = purpose = cookies = forwarded_proto = ""
    if_none_match = referer = b""
    accept_language = ""
    forwarding: list[str] | None = None
    wanted = _WANTED
    for name, value in scope["headers"]:
        if name not in wanted:
            continue
        kind = wanted[name]
        if kind == _UA:
            user_agent = value.decode("latin-1")[:512]
        elif kind == _COOKIE:
            cookies = value.decode("latin-1")
        elif kind == _PURPOSE:
            purpose = f"{purpose},{value.decode('latin-1')}" if purpose else value.decode("latin-1")
        elif kind == _IF_NONE_MATCH:
            if_none_match = value
        elif kind == _REFERER:
            referer = value
        elif kind == _ACCEPT_LANGUAGE:
            accept_language = value.decode("latin-1")[:256]
        elif not proxies.any:
            continue
        elif kind == _FORWARDED_PROTO:
            forwarded_proto = value.decode("latin-1")
        elif name == proxies.header_bytes:
            if forwarding is None:
                forwarding = []
            forwarding.append(value.decode("latin-1"))
    client = scope.get("client")
    client_ip = client[0] if client else ""
    https = scope.get("scheme", "http") == "https"
    if (forwarding is not None or forwarded_proto) and proxies.trusts(client_ip):  # the peer checked once
        scheme = proxies.forwarded_scheme(forwarding or (), forwarded_proto)
        if scheme is not None:
            https = scheme == "https"
        if forwarding is not None:
            client_ip = proxies.forwarded_client(client_ip, forwarding)
    query, error = parse_query(scope.get("query_string", b""))
    return Visit(
        scope["method"],
        scope["path"],
        query,
        user_agent,
        purpose,
        cookies,
        client_ip,
        https,
        error,
        if_none_match,
        referer=referer,
        accept_language=accept_language,
    )


def parse_query(raw: bytes) -> tuple[dict[str, str], str | None]:
    """The query as a dict (first value wins); refuses oversized or non-UTF-8 input with a reason.

    The same answers as parse_qsl(keep_blank_values=True, errors="strict", max_num_fields=64); a query
    without percent-escapes (most clicks: ?sub1=x&source=y) is split here, ~8x faster.
    """
    if not raw:
        return {}, None
    if len(raw) > MAX_QUERY_BYTES:
        return {}, "query_too_long"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return {}, "invalid_utf8"
    if "%" in text:
        return _parse_escaped(text)
    if text.count("&") >= MAX_FIELDS:
        return {}, "too_many_fields"
    if "+" in text:
        text = text.replace("+", " ")
    query: dict[str, str] = {}
    for part in text.split("&"):
        if part:
            key, _, value = part.partition("=")
            if len(value) > MAX_PARAM_CHARS and key not in _LONG_PARAMS:
                return {}, "field_too_long"
            if key not in query:
                query[key] = value
    return query, None


def _parse_escaped(text: str) -> tuple[dict[str, str], str | None]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, errors="strict", max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, UnicodeEncodeError):
        return {}, "invalid_utf8"
    except ValueError:
        return {}, "too_many_fields"
    query: dict[str, str] = {}
    for key, value in pairs:
        if len(value) > MAX_PARAM_CHARS and key not in _LONG_PARAMS:
            return {}, "field_too_long"
        query.setdefault(key, value)
    return query, None


def referrer_host(referer: bytes) -> str:
    """The host of a Referer header, lower-case, without scheme, port or path ("" when it has none)."""
    text = referer.decode("latin-1")
    start = text.find("://")
    if start < 0:
        return ""
    host = text[start + 3 :].split("/", 1)[0].rsplit("@", 1)[-1]
    if host.startswith("["):
        return host[: host.find("]") + 1].lower()[:255]
    return host.split(":", 1)[0].lower()[:255]
