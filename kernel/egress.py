"""The egress policy: every request Clickmint makes to a URL someone else chose goes through here.

A URL is checked when it is saved and again at each delivery: http or https only, no userinfo, a port the
operator allows, no macro in the host. Its name is resolved once; every address it resolves to must be a
public unicast address (not loopback, private, link-local, CGNAT, multicast, reserved or unspecified, nor an
IPv4-mapped, NAT64, 6to4 or Teredo form of one), and never Clickmint's own tracker or portal. The request
then connects to the address that was checked (no second lookup, so no DNS rebinding), with the URL's own
Host header and TLS name, and follows no redirect.

Settings (CLICKMINT_*): EGRESS_PORTS (default 80,443,8080,8443; `any`), EGRESS_ALLOW_HOSTS (names that may
resolve to internal addresses, e.g. a CRM on the office network), EGRESS_ALLOW_LOOPBACK (testing only:
loopback targets), EGRESS_CA_FILE (extra CA certificates to trust).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kernel.env import Env, SettingsError

DEFAULT_PORTS = frozenset((80, 443, 8080, 8443))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # the local-use 64:ff9b:1::/48 is not global: refused as such
_6TO4 = ipaddress.ip_network("2002::/16")
_TEREDO = ipaddress.ip_network("2001::/32")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]


class Blocked(Exception):
    """The policy refuses this URL; `reason` is a short phrase for people (never an error's text)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """A URL that passed the checks: where to connect, and what to say in Host and in TLS."""

    scheme: str
    hostname: str  # as written in the URL, lower case, without brackets
    port: int
    address: str  # the checked address to connect to
    path: str  # path and query, as given
    host_header: str  # hostname[:port], never credentials

    @property
    def connect_url(self) -> str:
        """The URL with the checked address in place of the name: the request goes exactly there."""
        literal = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.scheme}://{literal}:{self.port}{self.path}"


async def _getaddrinfo(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class EgressPolicy:
    ports: frozenset[int] | None = DEFAULT_PORTS  # None: any port
    allow_hosts: frozenset[str] = frozenset()  # names allowed to resolve to internal addresses
    allow_loopback: bool = False  # testing only: loopback addresses are allowed targets
    ca_file: str | None = None  # extra CA certificates for https targets
    own: tuple[str, ...] = ()  # Clickmint's own base URLs (tracker, portal): never a target
    resolver: Resolver = field(default=_getaddrinfo, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Env, own: Iterable[str] = ()) -> EgressPolicy:
        raw_ports = env.str("EGRESS_PORTS", ",".join(str(p) for p in sorted(DEFAULT_PORTS)))
        ports: frozenset[int] | None = None
        if raw_ports.lower() != "any":
            try:
                ports = frozenset(int(p) for p in raw_ports.split(",") if p.strip())
            except ValueError:
                raise SettingsError(f"CLICKMINT_EGRESS_PORTS={raw_ports!r} must be port numbers or 'any'") from None
            if not ports or any(not 1 <= p <= 65535 for p in ports):
                raise SettingsError(f"CLICKMINT_EGRESS_PORTS={raw_ports!r} must be port numbers or 'any'")
        named = env.str("EGRESS_ALLOW_HOSTS", "").split(",")
        hosts = frozenset(h.strip().lower().rstrip(".") for h in named if h.strip())
        return cls(
            ports=ports,
            allow_hosts=hosts,
            allow_loopback=env.bool("EGRESS_ALLOW_LOOPBACK", False),
            ca_file=env.raw("EGRESS_CA_FILE"),
            own=tuple(own),
        )

    def check_syntax(self, url: str) -> tuple[str, str, int, str]:
        """(scheme, hostname, port, path) of a URL whose form is allowed; raises Blocked."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise Blocked("the URL cannot be read") from None
        if parts.scheme not in ("http", "https"):
            raise Blocked("only http and https URLs are called")
        if "@" in parts.netloc or parts.username is not None:
            raise Blocked("a URL with a user name or password is not called (send credentials in the path or query)")
        hostname = (parts.hostname or "").rstrip(".")
        if not hostname or any(c in parts.netloc for c in "{}%\\ "):
            raise Blocked("the URL needs a plain host name (no macro, escape or space in it)")
        port = port or (443 if parts.scheme == "https" else 80)
        if self.ports is not None and port not in self.ports:
            allowed = ", ".join(str(p) for p in sorted(self.ports))
            raise Blocked(f"port {port} is not allowed for outbound calls (allowed: {allowed})")
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return parts.scheme, hostname, port, path

    async def check(self, url: str) -> Target:
        """Resolve once and check every address; the Target to connect to, or Blocked."""
        scheme, hostname, port, path = self.check_syntax(url)
        if await self._is_own(hostname, port):
            raise Blocked("a URL of this Clickmint itself is not called (no loops)")
        try:
            addresses = await self.resolver(hostname, port)
        except (OSError, UnicodeError):
            raise Blocked("the host name does not resolve") from None
        if not addresses:
            raise Blocked("the host name does not resolve")
        named = hostname in self.allow_hosts
        for address in addresses:
            reason = self.address_refused(address, named)
            if reason is not None:
                raise Blocked(reason)
        own = await self._own_addresses()
        if any((address, port) in own for address in addresses):
            raise Blocked("a URL of this Clickmint itself is not called (no loops)")
        default_port = 443 if scheme == "https" else 80
        host_header = (f"[{hostname}]" if ":" in hostname else hostname) + ("" if port == default_port else f":{port}")
        return Target(scheme, hostname, port, addresses[0], path, host_header)

    def address_refused(self, address: str, named: bool = False) -> str | None:
        """Why an address is not a target (None: it is one). `named`: the operator allowed this host by name."""
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return "the host resolves to something that is not an IP address"
        for candidate in _forms(ip):
            if candidate.is_unspecified:
                return "the host is the unspecified address"
            if candidate.is_multicast:
                return "the host is a multicast address"
            if candidate.is_loopback:
                if self.allow_loopback or named:
                    continue
                return "the host is a loopback address"
            if named:
                continue
            if candidate.is_link_local:
                return "the host is a link-local address (cloud metadata lives there)"
            if isinstance(candidate, ipaddress.IPv4Address) and candidate in _CGNAT:
                return "the host is a carrier-grade NAT address"
            if candidate.is_private:
                return "the host is a private address"
            if candidate.is_reserved or not candidate.is_global:
                return "the host is a reserved address"
        return None

    async def _is_own(self, hostname: str, port: int) -> bool:
        for base in self.own:
            parts = urlsplit(base)
            if (parts.hostname or "").lower() == hostname and hostname not in ("127.0.0.1", "::1", "localhost"):
                return True  # the public name of our tracker or portal, on any port
            if (parts.hostname or "").lower() == hostname and (parts.port or _default(parts.scheme)) == port:
                return True
        return False

    async def _own_addresses(self) -> set[tuple[str, int]]:
        """The addresses and ports our own tracker and portal answer on (their names resolved now)."""
        found: set[tuple[str, int]] = set()
        for base in self.own:
            parts = urlsplit(base)
            host, port = parts.hostname or "", parts.port or _default(parts.scheme)
            if host in ("0.0.0.0", "::"):  # listening everywhere: every local address with that port
                found.update((a, port) for a in ("127.0.0.1", "::1"))
                continue
            try:
                for address in await self.resolver(host, port):
                    found.add((address, port))
            except (OSError, UnicodeError):
                continue
        return found


def _default(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _forms(ip: IPAddress) -> list[IPAddress]:
    """What to judge: the IPv4 addresses an IPv6 address carries inside it (mapped, NAT64, 6to4, Teredo: the
    packet ends up there), else the address itself."""
    inner: list[IPAddress] = []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            inner.append(ip.ipv4_mapped)
        if ip in _NAT64:
            inner.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip in _6TO4 and ip.sixtofour is not None:
            inner.append(ip.sixtofour)
        if ip in _TEREDO and ip.teredo is not None:
            inner.extend(ip.teredo)
    return inner or [ip]
