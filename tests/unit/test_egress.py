"""The egress policy from tables: which addresses are targets, which URL forms are refused, its settings."""

from __future__ import annotations

import pytest

from kernel.egress import Blocked, EgressPolicy
from kernel.env import Env, SettingsError

POLICY = EgressPolicy()


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("93.184.215.14", None),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", None),
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "private"),  # reserved for future use
        ("64:ff9b:1::1", "reserved"),  # local-use NAT64
        ("192.0.2.1", "private"),  # documentation
        ("198.18.0.1", "private"),  # benchmarking
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::", "link-local"),
        ("not-an-address", "not an IP address"),
    ],
)
def test_which_addresses_are_targets(address: str, why: str | None) -> None:
    found = POLICY.address_refused(address)
    if why is None:
        assert found is None
    else:
        assert found is not None and why in found, found


def test_the_tests_switch_allows_loopback_only() -> None:
    tests = EgressPolicy(allow_loopback=True)
    assert tests.address_refused("127.0.0.1") is None
    assert tests.address_refused("::ffff:127.0.0.1") is None
    assert tests.address_refused("10.0.0.1") is not None
    assert tests.address_refused("169.254.169.254") is not None


def test_a_named_host_may_be_internal() -> None:
    assert POLICY.address_refused("10.0.0.5", named=True) is None
    assert POLICY.address_refused("0.0.0.0", named=True) is not None  # never unspecified or multicast
    assert POLICY.address_refused("224.0.0.1", named=True) is not None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://partner.example/", "only http and https"),
        ("javascript:alert(1)", "only http and https"),
        ("https://user:pw@partner.example/", "user name or password"),
        ("https://partner.example@10.0.0.1/", "user name or password"),
        ("https://:pw@partner.example/", "user name or password"),
        ("http:///path-only", "plain host name"),
        ("http://{sub1}.partner.example/", "plain host name"),
        ("http://partner%2eexample/", "plain host name"),
        ("http://partner.example:22/", "port 22 is not allowed"),
        ("http://partner.example:99999/", "cannot be read"),
    ],
)
def test_url_forms_that_are_refused(url: str, why: str) -> None:
    with pytest.raises(Blocked) as refused:
        POLICY.check_syntax(url)
    assert why in refused.value.reason


def test_url_forms_that_are_accepted() -> None:
    assert POLICY.check_syntax("https://Partner.Example/pb?c={click_id}") == (
        "https",
        "partner.example",
        443,
        "/pb?c={click_id}",
    )
    assert POLICY.check_syntax("http://partner.example:8080")[2:] == (8080, "/")


async def _fake_dns(host: str, port: int) -> list[str]:
    if host[0].isdigit():
        return [host]
    return {"public.example": ["93.184.215.14"], "mixed.example": ["93.184.215.14", "10.0.0.7"]}.get(host, [])


async def test_every_address_a_name_resolves_to_is_checked_and_the_first_is_connected_to() -> None:
    policy = EgressPolicy(resolver=_fake_dns)
    target = await policy.check("https://public.example/pb?x=1")
    assert (target.address, target.host_header, target.connect_url) == (
        "93.184.215.14",
        "public.example",
        "https://93.184.215.14:443/pb?x=1",
    )
    with pytest.raises(Blocked, match="private"):
        await policy.check("https://mixed.example/")
    with pytest.raises(Blocked, match="does not resolve"):
        await policy.check("https://nowhere.example/")
    named = EgressPolicy(resolver=_fake_dns, allow_hosts=frozenset({"mixed.example"}))
    assert (await named.check("https://mixed.example/")).address == "93.184.215.14"


async def test_own_services_are_never_targets() -> None:
    policy = EgressPolicy(
        resolver=_fake_dns, own=("https://public.example", "http://127.0.0.1:8001"), allow_loopback=True, ports=None
    )
    for url in ("https://public.example/a/1", "http://public.example:8080/", "http://127.0.0.1:8001/healthz"):
        with pytest.raises(Blocked, match="no loops"):
            await policy.check(url)
    assert (await policy.check("http://127.0.0.1:9999/")).address == "127.0.0.1"


def test_settings() -> None:
    default = EgressPolicy.from_env(Env({}))
    assert default.ports == frozenset((80, 443, 8080, 8443)) and not default.allow_loopback
    custom = EgressPolicy.from_env(
        Env({"CLICKMINT_EGRESS_PORTS": "any", "CLICKMINT_EGRESS_ALLOW_HOSTS": "CRM.office.example., erp"})
    )
    assert custom.ports is None and custom.allow_hosts == frozenset({"crm.office.example", "erp"})
    for bad in ("http", "0", "70000"):
        with pytest.raises(SettingsError, match="CLICKMINT_EGRESS_PORTS"):
            EgressPolicy.from_env(Env({"CLICKMINT_EGRESS_PORTS": bad}))
