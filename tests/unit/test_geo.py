"""Country lookup from a MaxMind-format database we write ourselves, and IP anonymisation."""

from __future__ import annotations

from pathlib import Path

import pytest
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from kernel.addresses import anonymize_ip
from tracker.geo import GeoError, GeoLookup


@pytest.fixture(scope="module")
def country_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("geo") / "country.mmdb"
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    writer.insert_network(IPSet(["203.0.113.0/24"]), {"country": {"iso_code": "US"}})
    writer.insert_network(IPSet(["2001:db8::/32"]), {"country": {"iso_code": "DE"}})
    writer.insert_network(IPSet(["198.51.100.0/24"]), {"registered_country": {"iso_code": "FR"}})
    writer.to_db_file(str(path))
    return str(path)


@pytest.mark.parametrize(
    ("ip", "country"),
    [
        ("203.0.113.9", "US"),
        ("2001:db8:1::7", "DE"),
        ("::ffff:203.0.113.9", "US"),
        ("198.51.100.1", "FR"),
        ("192.0.2.1", ""),
        ("not an ip", ""),
        ("", ""),
    ],
)
def test_country(country_db: str, ip: str, country: str) -> None:
    assert GeoLookup(country_db).country(ip) == country


def test_no_database_means_unknown() -> None:
    assert GeoLookup(None).country("203.0.113.9") == ""


def test_a_missing_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(GeoError, match=r"missing\.mmdb"):
        GeoLookup(str(tmp_path / "missing.mmdb"))


@pytest.mark.parametrize(
    ("ip", "anonymised"),
    [
        ("203.0.113.77", "203.0.113.0"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::"),
        ("::ffff:203.0.113.77", "203.0.113.0"),
        ("1.2.3.4.5", ""),
        (" 1.2.3.4", ""),
        ("1.2.3.4%eth0", ""),
        ("", ""),
    ],
)
def test_anonymize_ip(ip: str, anonymised: str) -> None:
    assert anonymize_ip(ip) == anonymised
