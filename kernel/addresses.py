"""Client addresses: who the client is behind trusted proxies, and what of its address is kept.

One implementation for the tracker (tracker/visit.py, tracker/postbacks.py) and the portal (portal/api.py).

Trusted proxies (CLICKMINT_TRUSTED_PROXIES, a comma-separated list of CIDR networks; empty by default):
- A forwarding header is read only when the connection's peer is itself a trusted proxy. A client that
  reaches the service directly cannot claim another address by sending the header.
- Which header the proxies write is CLICKMINT_PROXY_HEADER: `x-forwarded-for` (default; nginx, HAProxy,
  Caddy, cloud load balancers) or `forwarded` (RFC 7239). Only that one is read: a proxy that writes one
  header passes the other through as the client sent it, so reading both would let a client choose.
- The client is the rightmost address of the header that is not a trusted proxy: every proxy appends the
  address it received the request from, so entries left of the first untrusted one were written by
  whoever sent the request and prove nothing. When every entry is a trusted proxy, the leftmost is the
  client. An entry that is not an address (`unknown`, an obfuscated `_name`) ends the walk: the client
  is then the trusted hop that reported it.
- Several header lines are one list, in order (RFC 7230 section 3.2.2).
- CLICKMINT_TRUST_FORWARDED=true, the old setting, still works and means CLICKMINT_TRUSTED_PROXIES=0.0.0.0/0,::/0:
  every peer is a trusted proxy, so the client is the leftmost address, as before. It is only safe when
  nothing but the proxy can reach the service; set CLICKMINT_TRUSTED_PROXIES instead. Setting both is refused.

Anonymisation: an address is kept (events, rate-limit keys) as its /24 (IPv4) or /48 (IPv6) network;
an IPv4-mapped IPv6 address counts as the IPv4 address.

Pure: parses text, talks to no server.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from functools import lru_cache

from kernel.env import Env, SettingsError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
HEADERS = ("x-forwarded-for", "forwarded")
EVERYWHERE = "0.0.0.0/0,::/0"
_MAX_ENTRIES = 64  # a longer chain is cut to its rightmost entries: enough for any real path of proxies
_PEERS_CACHED = 4096


class TrustedProxies:
    """The networks whose forwarding headers are believed, and the one header they write."""

    __slots__ = ("_trusts_other", "_v4", "any", "header", "header_bytes", "networks")

    def __init__(self, networks: Iterable[Network] = (), header: str = "x-forwarded-for") -> None:
        if header not in HEADERS:
            raise SettingsError(f"CLICKMINT_PROXY_HEADER must be one of {', '.join(HEADERS)}, not {header!r}")
        self.networks: tuple[Network, ...] = tuple(networks)
        self.header = header
        self.header_bytes = header.encode()  # as ASGI names headers: lower-case bytes
        self.any = bool(self.networks)  # False: no header is ever read (the hot path skips all of this)
        # The IPv4 networks as (network, mask) integers: an IPv4 address is checked without ipaddress objects.
        self._v4 = tuple(
            (int(network.network_address), int(network.netmask)) for network in self.networks if network.version == 4
        )
        self._trusts_other = lru_cache(maxsize=_PEERS_CACHED)(self._check)

    def __repr__(self) -> str:
        networks = ",".join(str(network) for network in self.networks)
        return f"TrustedProxies({networks!r}, header={self.header!r})"

    @classmethod
    def parse(cls, text: str, header: str = "x-forwarded-for") -> TrustedProxies:
        """From a comma-separated list of networks ("10.0.0.0/8, 2001:db8::/32", a bare address is a /32
        or /128); raises SettingsError naming the entry that is not a network."""
        networks: list[Network] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                networks.append(ipaddress.ip_network(part, strict=False))
            except ValueError:
                raise SettingsError(
                    f"CLICKMINT_TRUSTED_PROXIES: {part!r} is not a network (write e.g. 10.0.0.0/8 or 2001:db8::/32)"
                ) from None
        return cls(networks, header.strip().lower())

    @classmethod
    def from_env(cls, env: Env) -> TrustedProxies:
        """CLICKMINT_TRUSTED_PROXIES and CLICKMINT_PROXY_HEADER, or the old CLICKMINT_TRUST_FORWARDED."""
        listed = env.str("TRUSTED_PROXIES", "")
        header = env.choice("PROXY_HEADER", HEADERS[0], HEADERS)
        if env.bool("TRUST_FORWARDED", False):
            if listed.strip():
                raise SettingsError(
                    "CLICKMINT_TRUST_FORWARDED is the old form of CLICKMINT_TRUSTED_PROXIES: set only the latter"
                )
            listed = EVERYWHERE
        return cls.parse(listed, header)

    def trusts(self, address: str) -> bool:
        """Whether an address (a peer, or an entry of a header) is a trusted proxy."""
        return self.any and self._trusts(address)

    def _trusts(self, address: str) -> bool:
        packed = _packed_v4(address)
        if packed is None:  # IPv6 or not an address: parsed by ipaddress, the verdicts cached
            return self._trusts_other(address)
        return self._trusts_v4(packed)

    def _trusts_v4(self, packed: bytes) -> bool:
        value = int.from_bytes(packed, "big")  # most addresses: a few integer operations, nothing cached
        for network, mask in self._v4:
            if value & mask == network:
                return True
        return False

    def _check(self, address: str) -> bool:
        parsed = parse_address(address)
        return parsed is not None and any(parsed in network for network in self.networks)

    def client(self, peer: str, values: Iterable[str]) -> str:
        """The client's address: `peer` (the connection's other end) unless it is a trusted proxy, then the
        rightmost untrusted address of the forwarding header's `values` (its lines, in order)."""
        if not self.any or not self._trusts(peer):
            return peer
        return self.forwarded_client(peer, values)

    def forwarded_client(self, peer: str, values: Iterable[str]) -> str:
        """client() for a peer already known to be a trusted proxy (the tracker checks it once per request)."""
        if self.header == "x-forwarded-for":
            return self._x_forwarded_client(peer, values)
        client = peer
        for entry in reversed(forwarded_for(values)[-_MAX_ENTRIES:]):
            if _packed_v4(entry) is None and parse_address(entry) is None:
                return client
            client = entry
            if not self._trusts(entry):
                return entry
        return client

    def _x_forwarded_client(self, peer: str, values: Iterable[str]) -> str:
        """The walk of client() over X-Forwarded-For, right to left, parsing only the entries it reaches.

        The same answer as walking x_forwarded_for(values)[-_MAX_ENTRIES:]: the rightmost untrusted address,
        the hop before an entry that is not an address, or the leftmost when all are trusted proxies.
        """
        parts: list[str] = []
        for value in values:
            parts += value.split(",")
        client = peer
        seen = 0
        for part in reversed(parts):
            part = part.strip()
            if not part:
                continue
            seen += 1
            if seen > _MAX_ENTRIES:
                break
            packed = _packed_v4(part)
            if packed is not None:  # the common entry: IPv4, canonical and checked without ipaddress
                client = socket.inet_ntop(socket.AF_INET, packed)
                if not self._trusts_v4(packed):
                    return client
                continue
            entry = canonical_address(part)
            if entry is None:
                return client
            client = entry
            if not self._trusts(entry):
                return entry
        return client

    def scheme(self, peer: str, values: Iterable[str], x_forwarded_proto: str | None) -> str | None:
        """The scheme the client used as the nearest proxy says (Forwarded `proto=`, or X-Forwarded-Proto
        with the x-forwarded-for header), or None: not behind a trusted proxy, or not said."""
        if not self.any or not self._trusts(peer):
            return None
        return self.forwarded_scheme(values, x_forwarded_proto)

    def forwarded_scheme(self, values: Iterable[str], x_forwarded_proto: str | None) -> str | None:
        """scheme() for a peer already known to be a trusted proxy."""
        if self.header == "forwarded":
            proto = forwarded_proto(values)
        elif not x_forwarded_proto:
            return None
        else:
            proto = x_forwarded_proto.strip().lower()
        return proto if proto in ("http", "https") else None


NO_PROXIES = TrustedProxies()


def _packed_v4(text: str) -> bytes | None:
    """The four bytes of an IPv4 address written as parse_address takes it (maybe with a port), else None.

    inet_pton accepts exactly the dotted quads ipaddress does (four decimal parts, no leading zeros), in a
    fraction of its time; anything else (IPv6, brackets, garbage) is left to parse_address.
    """
    text = text.strip()
    if ":" in text:
        if text.count(":") != 1:
            return None
        text = text.partition(":")[0]
    try:
        return socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        return None


def canonical_address(text: str) -> str | None:
    """An address as canonical text (what str(parse_address(text)) gives), or None when it is not one."""
    packed = _packed_v4(text)
    if packed is not None:
        return socket.inet_ntop(socket.AF_INET, packed)
    address = parse_address(text)
    return None if address is None else str(address)


def parse_address(text: str) -> Address | None:
    """An address as written in a header or by the server (IPv6 may be bracketed, with or without a port;
    IPv4 may carry a port); None when it is not one."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:  # IPv4 with a port; an IPv6 address has at least two colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def x_forwarded_for(values: Iterable[str]) -> list[str]:
    """The addresses of X-Forwarded-For lines, left to right, as canonical text when they parse."""
    chain: list[str] = []
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if part:
                address = canonical_address(part)
                chain.append(part if address is None else address)
    return chain


def forwarded_for(values: Iterable[str]) -> list[str]:
    """The `for=` addresses of Forwarded (RFC 7239) lines, left to right: `for=192.0.2.43`,
    `for="[2001:db8:cafe::17]:4711"`, `For="_hidden"` (kept as written: not an address). An element
    without `for=` counts as an unknown hop."""
    chain: list[str] = []
    for value in values:
        for element in _split(value, ","):
            found = "unknown"
            for pair in _split(element, ";"):
                name, _, raw = pair.partition("=")
                if name.strip().lower() == "for":
                    raw = raw.strip()
                    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
                        raw = raw[1:-1].replace('\\"', '"')
                    address = parse_address(raw)
                    found = raw if address is None else str(address)
                    break
            chain.append(found)
    return chain


def forwarded_proto(values: Iterable[str]) -> str:
    """The `proto=` of the last Forwarded element (what the nearest proxy saw), or ""."""
    last = ""
    for value in values:
        for element in _split(value, ","):
            last = ""
            for pair in _split(element, ";"):
                name, _, raw = pair.partition("=")
                if name.strip().lower() == "proto":
                    last = raw.strip().strip('"').lower()
    return last


def _split(text: str, separator: str) -> list[str]:
    """Split on a separator outside double quotes (a quoted IPv6 with port holds colons, not commas, but a
    quoted string may hold anything)."""
    if '"' not in text:
        return [part for part in text.split(separator) if part.strip()]
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def anonymize_ip(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network address; "" for anything that is not an address.
    IPv4-mapped IPv6 addresses count as IPv4 ("::ffff:203.0.113.9" -> "203.0.113.0")."""
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
