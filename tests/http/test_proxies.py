"""Trusted proxies on the running tracker: a forwarding header names the client only from a trusted proxy."""

from __future__ import annotations

import asyncpg
import pytest

from kernel.settings import Settings
from tests.factories import programme
from tests.http.tracker_client import running

PROXY = "10.1.2.3"


@pytest.mark.parametrize(
    ("env", "peer", "headers", "ip"),
    [
        # A spoofed X-Forwarded-For from an address that is not a trusted proxy is ignored.
        (
            {"CLICKMINT_TRUSTED_PROXIES": "10.0.0.0/8"},
            "203.0.113.77",
            {"x-forwarded-for": "198.51.100.23"},
            "203.0.113.0",
        ),
        # From the proxy: the rightmost address that is not a proxy, whatever the client wrote left of it.
        (
            {"CLICKMINT_TRUSTED_PROXIES": "10.0.0.0/8"},
            PROXY,
            {"x-forwarded-for": "6.6.6.6, 198.51.100.23, 10.0.0.9"},
            "198.51.100.0",
        ),
        # RFC 7239 Forwarded with a quoted IPv6 address and port; X-Forwarded-For is then not read.
        (
            {"CLICKMINT_TRUSTED_PROXIES": "10.0.0.0/8", "CLICKMINT_PROXY_HEADER": "forwarded"},
            PROXY,
            {"forwarded": 'for="[2001:db8:cafe::17]:4711"', "x-forwarded-for": "6.6.6.6"},
            "2001:db8:cafe::",
        ),
        # No proxies configured (the default): nothing forwarded is read, even from a private address.
        ({}, PROXY, {"x-forwarded-for": "198.51.100.23"}, "10.1.2.0"),
    ],
)
async def test_click_address(
    settings: Settings, db: asyncpg.Connection, env: dict[str, str], peer: str, headers: dict[str, str], ip: str
) -> None:
    prog = await programme(db)
    async with running(settings, env) as t, t.client(ip=peer) as http:
        await http.get(f"/c/{prog.code}", headers=headers)
        [event] = await t.events()
    assert event["ip"] == ip
