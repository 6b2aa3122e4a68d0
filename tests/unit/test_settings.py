"""Settings fail fast with a message that names the variable and what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing.settings import BillingSettings
from kernel.env import Env, SettingsError, redact
from kernel.settings import Settings
from tracker.settings import TrackerSettings

GOOD_SECRET = "s" * 40


def _env(tmp_path: Path, **values: str) -> Env:
    return Env({"CLICKMINT_DATA_DIR": str(tmp_path), **{f"CLICKMINT_{k}": v for k, v in values.items()}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"MODE": "production"}, "CLICKMINT_SECRET_KEY is required in production mode"),
        ({"MODE": "staging"}, "CLICKMINT_MODE='staging' must be one of development, production"),
        ({"SECRET_KEY": "short"}, "CLICKMINT_SECRET_KEY is too short"),
        ({"MODE": "production", "SECRET_KEY": GOOD_SECRET}, "CLICKMINT_REDIS_URL and CLICKMINT_DATABASE_URL"),
        ({"TRACKER_PORT": "80a"}, "CLICKMINT_TRACKER_PORT='80a' is not a whole number"),
        ({"PORTAL_PORT": "70000"}, "CLICKMINT_PORTAL_PORT=70000 is out of range"),
        ({"SHARDS": "0"}, "CLICKMINT_SHARDS=0 is out of range"),
        ({"REDIS_URL": "http://localhost:6379"}, "CLICKMINT_REDIS_URL must be a URL with scheme"),
        ({"REDIS_URL": "valkey://localhost:6379"}, "scheme redis or rediss or unix, got 'valkey'"),
        ({"DATABASE_URL": "mysql://db/x"}, "CLICKMINT_DATABASE_URL must be a URL with scheme"),
        ({"KEY_PREFIX": "bad prefix!"}, "CLICKMINT_KEY_PREFIX='bad prefix!'"),
        ({"TRACKER_WORKERS": "-1"}, "CLICKMINT_TRACKER_WORKERS=-1 is out of range"),
        ({"INGEST_PROCESSES": "5"}, "CLICKMINT_INGEST_PROCESSES=5 is out of range [1, 4]"),  # at most one per shard
        ({"INGEST_PROCESSES": "0"}, "CLICKMINT_INGEST_PROCESSES=0 is out of range"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(_env(tmp_path, **values))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"GEOIP_DB": "/nonexistent/country.mmdb"}, "CLICKMINT_GEOIP_DB='/nonexistent/country.mmdb'"),
        ({"REDIS_BUDGET_MS": "0"}, "CLICKMINT_REDIS_BUDGET_MS=0 is out of range"),
        ({"TRUST_FORWARDED": "maybe"}, "CLICKMINT_TRUST_FORWARDED='maybe' is not a boolean"),
    ],
)
def test_bad_tracker_settings_are_refused(tmp_path: Path, values: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        TrackerSettings.from_env(_env(tmp_path, **values))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("part", "message"),
    [
        ("2", "CLICKMINT_INGEST_PART='2' is not i/n (e.g. 1/2)"),
        ("a/b", "CLICKMINT_INGEST_PART='a/b' is not i/n"),
        ("3/2", "CLICKMINT_INGEST_PART='3/2': need 1 <= i <= n <= the number of shards (4)"),
        ("0/2", "CLICKMINT_INGEST_PART='0/2': need 1 <= i"),
        ("1/5", "CLICKMINT_INGEST_PART='1/5': need 1 <= i <= n <= the number of shards (4)"),
    ],
)
def test_bad_ingest_part_is_refused(tmp_path: Path, part: str, message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        BillingSettings.from_env(_env(tmp_path, INGEST_PART=part))
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("shards", "part", "mine"),
    [("4", "1/1", [0, 1, 2, 3]), ("4", "1/2", [0, 2]), ("4", "2/2", [1, 3]), ("5", "3/3", [2]), ("5", "1/3", [0, 3])],
)
def test_ingest_parts_share_the_shards(tmp_path: Path, shards: str, part: str, mine: list[int]) -> None:
    assert BillingSettings.from_env(_env(tmp_path, SHARDS=shards, INGEST_PART=part)).my_shards() == mine


def test_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(_env(tmp_path))
    assert (settings.host, settings.tracker_port, settings.portal_port) == ("127.0.0.1", 8000, 8001)
    assert settings.redis_url is None and settings.database_url is None  # embedded servers
    assert settings.data_dir == tmp_path and settings.shards == 4 and settings.key_prefix == "cm"


def test_development_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings.from_env(_env(tmp_path)).secret_key
    assert len(first) >= 32
    assert Settings.from_env(_env(tmp_path)).secret_key == first
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_the_secret_is_never_printed(tmp_path: Path) -> None:
    settings = Settings.from_env(_env(tmp_path, SECRET_KEY=GOOD_SECRET))
    assert GOOD_SECRET not in repr(settings)


def test_production_with_everything_set(tmp_path: Path) -> None:
    settings = Settings.from_env(
        _env(
            tmp_path,
            MODE="production",
            SECRET_KEY=GOOD_SECRET,
            REDIS_URL="redis://r:6379/0",
            DATABASE_URL="postgresql://u:pw@db/clickmint",
        )
    )
    assert settings.mode == "production" and settings.redis_url == "redis://r:6379/0"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@db/x", "postgresql://u:***@db/x"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        (None, "(embedded)"),
    ],
)
def test_redact_hides_passwords(url: str | None, shown: str) -> None:
    assert redact(url) == shown
