"""The one HTTP-aware constructor: what the tracker needs to know about a request, read from the ASGI scope."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

MAX_QUERY_BYTES = 4096
MAX_PARAM_CHARS = 255


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
    _visitor: str | None = None

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
        """A keyed hash of address and user agent: stable per visitor, reveals neither."""
        cached = self._visitor
        if cached is None:
            data = f"{self.client_ip}|{self.user_agent}".encode()
            cached = self._visitor = hashlib.blake2b(data, key=key[:64], digest_size=12).hexdigest()
        return cached


def from_scope(scope: dict[str, Any], trust_forwarded: bool) -> Visit:
    """Read method, path, query, the few headers we use, the client address and the scheme."""
    user_agent = purpose = cookies = forwarded_for = forwarded_proto = ""
    if_none_match = b""
    for name, value in scope["headers"]:
        if name == b"user-agent":
            user_agent = value.decode("latin-1")[:512]
        elif name == b"cookie":
            cookies = value.decode("latin-1")
        elif name in (b"sec-purpose", b"purpose", b"x-purpose", b"x-moz"):
            purpose = f"{purpose},{value.decode('latin-1')}" if purpose else value.decode("latin-1")
        elif name == b"if-none-match":
            if_none_match = value
        elif trust_forwarded and name == b"x-forwarded-for":
            forwarded_for = value.decode("latin-1")
        elif trust_forwarded and name == b"x-forwarded-proto":
            forwarded_proto = value.decode("latin-1")
    client = scope.get("client")
    client_ip = client[0] if client else ""
    if forwarded_for:
        client_ip = forwarded_for.split(",")[0].strip()
    https = (forwarded_proto or scope.get("scheme", "http")) == "https"
    query, error = parse_query(scope.get("query_string", b""))
    return Visit(
        scope["method"], scope["path"], query, user_agent, purpose, cookies, client_ip, https, error, if_none_match
    )


def parse_query(raw: bytes) -> tuple[dict[str, str], str | None]:
    """The query as a dict (first value wins); refuses oversized or non-UTF-8 input with a reason."""
    if not raw:
        return {}, None
    if len(raw) > MAX_QUERY_BYTES:
        return {}, "query_too_long"
    try:
        pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict", max_num_fields=64)
    except (UnicodeDecodeError, UnicodeEncodeError):
        return {}, "invalid_utf8"
    except ValueError:
        return {}, "too_many_fields"
    query: dict[str, str] = {}
    for key, value in pairs:
        if len(value) > MAX_PARAM_CHARS and key != "url":
            return {}, "field_too_long"
        query.setdefault(key, value)
    return query, None
