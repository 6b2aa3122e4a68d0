"""Destination templates with click macros, and the checks that keep every redirect on an allowed host."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import quote, urlsplit

MACROS: Final = ("click_id", "sub1", "sub2", "sub3", "sub4", "sub5", "source", "partner_id", "offer_id", "link_id")
MAX_URL_LENGTH: Final = 2048  # a stored destination or a deep link
MAX_LOCATION_LENGTH: Final = 8192  # a rendered Location: the template plus encoded sub ids

_MACRO: Final = re.compile(r"\{([a-z0-9_]+)\}")
# What browsers strip, rewrite or read as a separator where urlsplit does not: C0 controls, space, DEL,
# backslash. Refused anywhere in the URL, never cleaned up.
_UNSAFE: Final = re.compile(r"[\x00-\x20\x7f\\]").search
_NON_ASCII: Final = re.compile(r"[^\x00-\x7f]+")
# Values made only of what quote(v, safe="") leaves alone skip the call: click ids, numeric ids.
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]+").fullmatch
_LABEL: Final = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME: Final = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}").fullmatch


def _normalize_host(name: str) -> str:
    """Lower-case ASCII form of a host name (IDNA for non-ASCII, one trailing dot dropped), or ValueError."""
    host = name.lower()
    if host.endswith("."):
        host = host[:-1]
    if not host.isascii():
        encoded = host.encode("idna").decode("ascii")
        # The stdlib codec is IDNA 2003: it folds some characters (ß to ss, fullwidth letters) that browsers
        # (UTS #46) keep, so we could approve a host other than the one visited. Accept only names that
        # survive the round trip unchanged.
        if encoded.encode("ascii").decode("idna") != host:
            raise ValueError("the host name changes under IDNA mapping")
        host = encoded
    if len(host) > 253 or _HOSTNAME(host) is None:
        raise ValueError(f"{name!r} is not a valid host name")
    return host


def _parse(url: str, max_length: int) -> tuple[str, str, str, str]:
    """Check a safe absolute http(s) URL: return (scheme, host, port, rest), or raise ValueError saying why."""
    if type(url) is not str:
        raise ValueError("not a string")
    if len(url) > max_length:
        raise ValueError(f"longer than {max_length} characters")
    if _UNSAFE(url) is not None:
        raise ValueError("contains a control character, a space or a backslash")
    # The raw prefix, not urlsplit's scheme: "https:/x" and "http:x" are hosts to a browser, paths to urlsplit.
    if url[:8].lower() != "https://" and url[:7].lower() != "http://":
        raise ValueError("not an absolute http:// or https:// URL")
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError("has user information")
    if netloc.startswith("["):
        raise ValueError("IP literal hosts are not supported")
    name, colon, port = netloc.partition(":")
    if colon and not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= 65535):
        raise ValueError(f"invalid port {port!r}")
    rest = url[len(parts.scheme) + 3 + len(netloc) :]  # path, query and fragment as written
    return parts.scheme, _normalize_host(name), port, rest


def _to_uri(url: str, parsed: tuple[str, str, str, str]) -> str:
    """Rewrite an IRI as the URI a browser would visit: IDNA host, UTF-8 percent-encoded elsewhere."""
    if url.isascii():
        return url
    scheme, host, port, rest = parsed
    rest = _NON_ASCII.sub(lambda m: quote(m.group(), safe=""), rest)
    return f"{scheme}://{host}{':' + port if port else ''}{rest}"


def _host_allowed(host: str, allowed_hosts: frozenset[str]) -> bool:
    """True if host is an entry, or example.com or a subdomain of it for an entry ".example.com"."""
    if host in allowed_hosts or "." + host in allowed_hosts:
        return True
    dot = host.find(".")
    while dot != -1:
        if host[dot:] in allowed_hosts:
            return True
        dot = host.find(".", dot + 1)
    return False


def normalize_hosts(entries: Iterable[str]) -> frozenset[str]:
    """Normalize an offer's allowed hosts at config load ("Shop.Example.com.", ".bücher.example", ...).

    safe_deep_link compares against lower-case ASCII (IDNA) names without a trailing dot, which is what this
    returns; a leading dot is kept, it means "this domain and all its subdomains". Raises ValueError.
    """
    hosts: set[str] = set()
    for entry in entries:
        text = entry.strip()
        if text.startswith("."):
            hosts.add("." + _normalize_host(text[1:]))
        else:
            hosts.add(_normalize_host(text))
    return frozenset(hosts)


def safe_deep_link(url: str | None, allowed_hosts: frozenset[str]) -> str | None:
    """Return `url` if it is a safe deep link to one of `allowed_hosts`, else None.

    Safe: at most 2048 characters; no control character, space or backslash anywhere; scheme http or https
    followed by "//"; no user information; a valid host name equal to an entry, or equal to or under an entry
    written ".example.com"; any port. Entries are lower-case ASCII without a trailing dot (see normalize_hosts).
    A URL with non-ASCII characters comes back as the URI a browser would visit (IDNA host, percent-encoded
    path), so the result can always go in a Location header.
    """
    if not url:
        return None
    try:
        parsed = _parse(url, MAX_URL_LENGTH)
        if not _host_allowed(parsed[1], allowed_hosts):
            return None
        return _to_uri(url, parsed)
    except ValueError:  # also UnicodeError, from IDNA or from lone surrogates
        return None


def is_safe_location(url: str) -> bool:
    """True if `url` may go in a Location header: absolute http(s), printable ASCII, a valid host, no userinfo.

    The last line of defence before any redirect, whatever built the URL.
    """
    try:
        return url.isascii() and _parse(url, MAX_LOCATION_LENGTH) is not None
    except (ValueError, AttributeError):
        return False


class Template:
    """A destination URL with macros such as {click_id}, compiled once at config load, rendered per click."""

    __slots__ = ("_head", "_tail", "fixed_origin", "macros", "url")

    def __init__(self, url: str) -> None:
        try:
            uri = _to_uri(url, _parse(url, MAX_URL_LENGTH))
        except ValueError as exc:
            raise ValueError(f"unsafe destination URL {url!r}: {exc}") from None
        self.url: str = uri
        pieces = _MACRO.split(uri)  # literal, name, literal, name, ..., literal
        head = pieces[0]
        tail: list[tuple[str, str]] = []
        names: set[str] = set()
        for i in range(1, len(pieces), 2):
            if pieces[i] in MACROS:
                tail.append((pieces[i], pieces[i + 1]))
                names.add(pieces[i])
            elif tail:  # an unknown {name} stays as written
                tail[-1] = (tail[-1][0], tail[-1][1] + "{" + pieces[i] + "}" + pieces[i + 1])
            else:
                head += "{" + pieces[i] + "}" + pieces[i + 1]
        self._head: str = head
        self._tail: tuple[tuple[str, str], ...] = tuple(tail)
        self.macros: frozenset[str] = frozenset(names)  # the macros this template uses
        # Macros only after the path starts: a rendered URL keeps the validated scheme and host.
        rest = head.split("://", 1)[1] if "://" in head else ""
        self.fixed_origin: bool = "/" in rest or "?" in rest

    def __repr__(self) -> str:
        return f"Template({self.url!r})"

    def bind(self, values: Mapping[str, str]) -> Template:
        """This template with the macros `values` names filled in now (e.g. a link's ids), the others left to render.

        render() of the result gives what render() of this template gives with both sets of values.
        """
        head = self._head
        tail: list[tuple[str, str]] = []
        for name, literal in self._tail:
            if name not in values:
                tail.append((name, literal))
                continue
            value = values[name]
            text = (_encode(value) if value else "") + literal
            if tail:
                tail[-1] = (tail[-1][0], tail[-1][1] + text)
            else:
                head += text
        bound = object.__new__(Template)
        bound.url, bound.fixed_origin = self.url, self.fixed_origin  # the origin is the unbound template's
        bound._head, bound._tail = head, tuple(tail)
        bound.macros = frozenset(name for name, _ in tail)
        return bound

    def render(self, values: Mapping[str, str]) -> str:
        """Fill the macros: each value percent-encoded with quote(v, safe=""); a missing or empty one renders as "".

        Unknown {names} were left as written at compile time; a value is never expanded again.
        """
        out = [self._head]
        get = values.get
        for name, literal in self._tail:
            value = get(name)
            if value:
                out.append(value if _UNRESERVED(value) is not None else _encode(value))
            out.append(literal)
        return "".join(out)


def _encode(value: str) -> str:
    # errors="replace": a lone surrogate from a badly decoded query becomes %3F, not a 500
    return value if _UNRESERVED(value) is not None else quote(value, safe="", errors="replace")
