"""Client addresses behind trusted proxies (kernel/addresses.py), from tables: one rule for tracker and portal."""

from __future__ import annotations

import ipaddress
import random
from typing import Any

import pytest
from starlette.requests import Request

from kernel.addresses import (
    NO_PROXIES,
    TrustedProxies,
    anonymize_ip,
    canonical_address,
    forwarded_for,
    parse_address,
    x_forwarded_for,
)
from kernel.env import Env, SettingsError
from portal.api import client_key, request_scheme
from tracker.visit import from_scope

PROXIES = TrustedProxies.parse("10.0.0.0/8, 2001:db8:ffff::/48")
FORWARDED = TrustedProxies.parse("10.0.0.0/8, 2001:db8:ffff::/48", "forwarded")


@pytest.mark.parametrize(
    ("proxies", "peer", "header", "client"),
    [
        # No proxies configured: a forwarding header is never read.
        (NO_PROXIES, "203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        # A spoofed X-Forwarded-For from an address that is not a trusted proxy is ignored.
        (PROXIES, "203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        (PROXIES, "2001:db8:1::9", ["198.51.100.1"], "2001:db8:1::9"),
        # From a trusted proxy: the rightmost address that is not a trusted proxy.
        (PROXIES, "10.0.0.1", ["198.51.100.1"], "198.51.100.1"),
        (PROXIES, "10.0.0.1", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # what the client wrote is left of it
        (PROXIES, "10.0.0.1", ["6.6.6.6, 198.51.100.1, 10.0.0.2, 10.9.9.9"], "198.51.100.1"),  # a chain of proxies
        (PROXIES, "10.0.0.1", ["6.6.6.6", "198.51.100.1, 10.0.0.2"], "198.51.100.1"),  # several header lines
        (PROXIES, "10.0.0.1", ["10.0.0.3, 10.0.0.2"], "10.0.0.3"),  # all proxies: the leftmost
        (PROXIES, "10.0.0.1", ["6.6.6.6, unknown, 10.0.0.2"], "10.0.0.2"),  # not an address: the hop that said so
        (PROXIES, "10.0.0.1", [""], "10.0.0.1"),
        (PROXIES, "10.0.0.1", [], "10.0.0.1"),
        # IPv6, compressed or not, with brackets and ports; mapped IPv4 is IPv4.
        (PROXIES, "2001:db8:ffff::1", ["2001:0db8:0001:0000:0000:0000:0000:0009"], "2001:db8:1::9"),
        (PROXIES, "2001:db8:ffff::1", ["2001:db8:1::9, 2001:db8:ffff:0:0:0:0:2"], "2001:db8:1::9"),
        (PROXIES, "::ffff:10.0.0.1", ["[2001:db8:1::9]:4711"], "2001:db8:1::9"),
        (PROXIES, "10.0.0.1", ["::ffff:198.51.100.1"], "198.51.100.1"),
        (PROXIES, "10.0.0.1", ["198.51.100.1:5555"], "198.51.100.1"),
        # Forwarded (RFC 7239), only when the proxies are said to write it.
        (FORWARDED, "10.0.0.1", ['for="[2001:db8:cafe::17]:4711"'], "2001:db8:cafe::17"),
        (FORWARDED, "10.0.0.1", ["for=192.0.2.60;proto=http;by=203.0.113.43"], "192.0.2.60"),
        (FORWARDED, "10.0.0.1", ["for=6.6.6.6, for=192.0.2.43, for=10.0.0.2"], "192.0.2.43"),
        (FORWARDED, "10.0.0.1", ['For="[2001:db8:cafe::17]:4711", for=10.0.0.2'], "2001:db8:cafe::17"),
        (FORWARDED, "10.0.0.1", ['for=6.6.6.6, for="_hidden", for=10.0.0.2'], "10.0.0.2"),
        (FORWARDED, "10.0.0.1", ['for="198.51.100.1:80";proto=https'], "198.51.100.1"),
        (FORWARDED, "203.0.113.9", ["for=198.51.100.1"], "203.0.113.9"),  # spoofed, from an untrusted peer
    ],
)
def test_client_address(proxies: TrustedProxies, peer: str, header: list[str], client: str) -> None:
    assert proxies.client(peer, header) == client


def test_only_the_configured_header_is_read() -> None:
    """A proxy passes on the header it does not write as the client sent it: reading it would let a client choose."""
    xff = _scope("10.0.0.1", [(b"forwarded", b"for=6.6.6.6"), (b"x-forwarded-for", b"198.51.100.1")])
    assert from_scope(xff, PROXIES).client_ip == "198.51.100.1"
    assert from_scope(xff, FORWARDED).client_ip == "6.6.6.6"
    only_xff = _scope("10.0.0.1", [(b"x-forwarded-for", b"198.51.100.1")])
    assert from_scope(only_xff, FORWARDED).client_ip == "10.0.0.1"


def test_the_tracker_reads_the_scheme_only_from_a_trusted_proxy() -> None:
    headers = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"198.51.100.1")]
    assert from_scope(_scope("10.0.0.1", headers), PROXIES).https is True
    assert from_scope(_scope("203.0.113.9", headers), PROXIES).https is False
    assert from_scope(_scope("10.0.0.1", headers), NO_PROXIES).https is False
    forwarded = [(b"forwarded", b"for=198.51.100.1;proto=https"), (b"x-forwarded-proto", b"http")]
    assert from_scope(_scope("10.0.0.1", forwarded), FORWARDED).https is True


@pytest.mark.parametrize(
    ("peer", "header", "key"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.0"),  # spoofed: the peer's own network
        ("10.0.0.1", "198.51.100.1", "198.51.100.0"),
        ("10.0.0.1", "2001:db8::1", "2001:db8::"),  # compressed IPv6: its /48, not "2001:db8:"
        ("10.0.0.1", "2001:db8:0:1::1", "2001:db8::"),
        ("10.0.0.1", "2001:db8:abcd:12::1", "2001:db8:abcd::"),
        ("2001:db8:5::1", "198.51.100.1", "2001:db8:5::"),
    ],
)
def test_the_portal_keys_clients_by_network_by_the_same_rule(peer: str, header: str, key: str) -> None:
    request = Request(_scope(peer, [(b"x-forwarded-for", header.encode())]))
    assert client_key(request, PROXIES) == key


def test_the_portal_reads_the_scheme_only_from_a_trusted_proxy() -> None:
    headers = [(b"x-forwarded-proto", b"https")]
    assert request_scheme(Request(_scope("10.0.0.1", headers)), PROXIES) == "https"
    assert request_scheme(Request(_scope("203.0.113.9", headers)), PROXIES) == "http"


@pytest.mark.parametrize(
    ("environ", "trusted", "untrusted"),
    [
        ({}, [], ["127.0.0.1", "10.0.0.1"]),
        ({"CLICKMINT_TRUSTED_PROXIES": "10.0.0.0/8,192.168.1.7"}, ["10.1.2.3", "192.168.1.7"], ["192.168.1.8"]),
        ({"CLICKMINT_TRUSTED_PROXIES": " 2001:db8::/32 , "}, ["2001:db8:1::1"], ["2001:db9::1"]),
        # The old setting: every peer is a proxy, so the leftmost address is the client, as it always was.
        ({"CLICKMINT_TRUST_FORWARDED": "true"}, ["203.0.113.9", "2001:db8::1"], []),
        ({"CLICKMINT_TRUST_FORWARDED": "false", "CLICKMINT_TRUSTED_PROXIES": "10.0.0.0/8"}, ["10.0.0.1"], ["::1"]),
    ],
)
def test_settings(environ: dict[str, str], trusted: list[str], untrusted: list[str]) -> None:
    proxies = TrustedProxies.from_env(Env(environ))
    assert [a for a in trusted + untrusted if proxies.trusts(a)] == trusted


def test_the_old_setting_keeps_the_leftmost_address() -> None:
    proxies = TrustedProxies.from_env(Env({"CLICKMINT_TRUST_FORWARDED": "true"}))
    assert proxies.client("127.0.0.1", ["198.51.100.23, 10.0.0.1"]) == "198.51.100.23"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"CLICKMINT_TRUSTED_PROXIES": "10.0.0.0/8, proxy.internal"}, "'proxy.internal' is not a network"),
        ({"CLICKMINT_TRUSTED_PROXIES": "10.0.0.0/33"}, "'10.0.0.0/33' is not a network"),
        ({"CLICKMINT_TRUSTED_PROXIES": "10.0.0.0/8", "CLICKMINT_TRUST_FORWARDED": "true"}, "set only the latter"),
        ({"CLICKMINT_PROXY_HEADER": "x-real-ip"}, "CLICKMINT_PROXY_HEADER"),
    ],
)
def test_malformed_settings_are_refused(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        TrustedProxies.from_env(Env(environ))


def test_header_parsers() -> None:
    assert x_forwarded_for(["a, 2001:0db8::0001", " 192.0.2.1 "]) == ["a", "2001:db8::1", "192.0.2.1"]
    assert forwarded_for(['for="a,b";proto=https, by=x, for=192.0.2.1']) == ["a,b", "unknown", "192.0.2.1"]


# What a header may hold where an address is expected: the IPv4 fast path (inet_pton) must answer as ipaddress does.
TRICKY = [
    "203.0.113.9",
    " 203.0.113.9 ",
    "203.0.113.9:8080",
    "0.0.0.0",
    "255.255.255.255",
    "256.1.1.1",
    "010.1.2.3",  # a leading zero: refused by both (it would be octal to some parsers)
    "1.2.3",
    "1.2.3.4.5",
    "1.2.3.4:",
    "1.2.3.4:5:6",
    "1..2.3",
    "0x1.2.3.4",
    "1.2.3.-4",
    "+1.2.3.4",
    "1.2.3.4 5",
    "1.2.3.\u0664",  # an Arabic-Indic digit four: a digit to str.isdigit, not to an address
    "1.2.3.4\x00",
    "",
    ":",
    "[1.2.3.4]",
    "[::1]:80",
    "::ffff:10.0.0.1",
    "2001:db8::1",
    "unknown",
    "_hidden",
]


def _reference(text: str) -> str | None:
    """What canonical_address answered before its fast path: ipaddress alone."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@pytest.mark.parametrize("text", [t.encode().decode("unicode_escape") for t in TRICKY])
def test_the_ipv4_fast_path_answers_as_ipaddress(text: str) -> None:
    assert canonical_address(text) == _reference(text)
    parsed = parse_address(text)
    assert (None if parsed is None else str(parsed)) == _reference(text)
    for proxies in (PROXIES, TrustedProxies.parse("0.0.0.0/0"), TrustedProxies.parse("1.2.3.4, 203.0.113.0/24")):
        expected = parsed is not None and any(parsed in network for network in proxies.networks)
        assert proxies.trusts(text) is expected


def test_the_ipv4_fast_path_checks_every_network() -> None:
    proxies = TrustedProxies.parse("10.0.0.0/8, 192.168.1.7, 172.16.0.0/12, 2001:db8::/32")
    verdicts = {a: proxies.trusts(a) for a in ("10.255.0.1", "11.0.0.1", "192.168.1.7", "192.168.1.8", "172.31.9.9")}
    assert verdicts == {
        "10.255.0.1": True,
        "11.0.0.1": False,
        "192.168.1.7": True,
        "192.168.1.8": False,
        "172.31.9.9": True,
    }
    assert proxies.client("10.0.0.1", ["6.6.6.6, 172.16.0.1, 192.168.1.7"]) == "6.6.6.6"


def _reference_client(proxies: TrustedProxies, peer: str, values: list[str]) -> str:
    """client() as it was before its X-Forwarded-For walk parsed only what it reaches: the whole chain first."""
    if not proxies.trusts(peer):
        return peer
    client = peer
    for entry in reversed(x_forwarded_for(values)[-64:]):
        if parse_address(entry) is None:
            return client
        client = entry
        if not proxies.trusts(entry):
            return entry
    return client


def test_the_x_forwarded_for_walk_answers_as_the_whole_chain() -> None:
    """Every header of up to three entries from the tricky table (and a chain past the 64-entry cut), each
    split over one or two lines, under three configurations: the same client as walking the parsed chain."""
    entries = [t.encode().decode("unicode_escape") for t in TRICKY] + ["10.1.2.3", "2001:db8:ffff::7", "192.0.2.1"]
    configs = (PROXIES, TrustedProxies.parse("0.0.0.0/0, ::/0"), TrustedProxies.parse("192.0.2.0/24, ::1"))
    rng = random.Random(22)
    headers = [[a] for a in entries] + [rng.sample(entries, rng.randint(2, 3)) for _ in range(400)]
    headers.append(["6.6.6.6"] + ["10.0.0.9"] * 63)  # within the 64 entries read: the untrusted address
    headers.append(["6.6.6.6"] + ["10.0.0.9"] * 64)  # one past them: the leftmost of the 64 read
    headers.append(["10.0.0.9"] * 70 + [" ", ""])
    for parts in headers:
        cut = rng.randint(0, len(parts))
        lines = [", ".join(parts[:cut]), ",".join(parts[cut:])] if cut else [", ".join(parts)]
        for proxies in configs:
            for peer in ("10.0.0.1", "2001:db8:ffff::1", "192.0.2.9"):
                assert proxies.client(peer, lines) == _reference_client(proxies, peer, lines), (peer, lines)


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.9", "203.0.113.0"),
        ("2001:db8:1:2::3", "2001:db8:1::"),
        ("::ffff:203.0.113.9", "203.0.113.0"),
        ("not an address", ""),
    ],
)
def test_anonymize(address: str, network: str) -> None:
    assert anonymize_ip(address) == network


def _scope(peer: str, headers: list[tuple[bytes, bytes]]) -> Any:
    return {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": headers,
        "client": (peer, 5000),
        "scheme": "http",
        "server": ("track.test", 80),
    }
