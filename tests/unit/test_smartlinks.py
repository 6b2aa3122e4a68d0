"""Smart-link rules from tables: device and language parsing, each condition, UTC hours and weekdays, weights,
and the fallback (tracker/smartlinks.py)."""

from __future__ import annotations

import collections
import datetime as dt

import pytest

from tracker.smartlinks import choose, compile_rules, device_of, language_of

HOSTS = frozenset({"shop.example.com"})
IDS = {"partner_id": "7", "offer_id": "3", "link_id": "11"}
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
IPAD = "Mozilla/5.0 (iPad; CPU OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"
ANDROID_PHONE = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120 Mobile Safari/537.36"
ANDROID_TABLET = "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 Chrome/120 Safari/537.36"
DESKTOP = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120 Safari/537.36"


@pytest.mark.parametrize(
    ("ua", "expected"),
    [
        (IPHONE, ("mobile", "ios")),
        (IPAD, ("tablet", "ios")),
        (ANDROID_PHONE, ("mobile", "android")),
        (ANDROID_TABLET, ("tablet", "android")),
        (DESKTOP, ("desktop", "other")),
        ("", ("desktop", "other")),
    ],
)
def test_device_of(ua: str, expected: tuple[str, str]) -> None:
    assert device_of(ua) == expected


@pytest.mark.parametrize(
    ("header", "language"), [("de-CH,de;q=0.9,en;q=0.8", "de"), ("EN", "en"), ("", ""), ("fr;q=0.5", "fr")]
)
def test_language_of(header: str, language: str) -> None:
    assert language_of(header) == language


def _url(name: str) -> dict[str, str]:
    return {"name": name, "url": f"https://shop.example.com/{name}?cid={{click_id}}&p={{partner_id}}"}


RULES = {
    "rules": [
        {"country": ["us"], "os": ["ios"], "variants": [_url("us-ios")]},
        {"device": ["tablet"], "variants": [_url("tablets")]},
        {"language": ["de"], "hours": {"from": 22, "to": 6}, "variants": [_url("de-night")]},
        {"weekdays": [6, 7], "variants": [_url("weekend")]},
        {
            "country": ["FR"],
            "variants": [{**_url("a"), "weight": 3}, {**_url("b"), "weight": 1}, {**_url("never"), "weight": 0}],
        },
    ],
    "fallback": _url("home"),
}
SMART = compile_rules(RULES, HOSTS, IDS, lambda offer: None)
MONDAY_NOON = int(dt.datetime(2026, 12, 7, 12, tzinfo=dt.UTC).timestamp())
MONDAY_2300 = MONDAY_NOON + 11 * 3600
TUESDAY_0500 = MONDAY_NOON + 17 * 3600
SATURDAY_NOON = MONDAY_NOON + 5 * 86400


@pytest.mark.parametrize(
    ("country", "ua", "lang", "now", "expected"),
    [
        ("US", IPHONE, "en", MONDAY_NOON, "us-ios"),
        ("US", ANDROID_PHONE, "en", MONDAY_NOON, "home"),  # not iOS: no rule, the fallback
        ("CA", IPAD, "en", MONDAY_NOON, "tablets"),
        ("US", IPAD, "en", MONDAY_NOON, "us-ios"),  # rules are ordered: the first match wins
        ("DE", DESKTOP, "de-DE", MONDAY_2300, "de-night"),  # 22 to 6 wraps past midnight
        ("DE", DESKTOP, "de-DE", TUESDAY_0500, "de-night"),
        ("DE", DESKTOP, "de-DE", MONDAY_NOON, "home"),
        ("DE", DESKTOP, "en", SATURDAY_NOON, "weekend"),
    ],
)
def test_choose(country: str, ua: str, lang: str, now: int, expected: str) -> None:
    chosen = choose(SMART, country, ua, lang, now)
    assert chosen is not None and chosen.name == expected
    assert chosen.template is not None and chosen.template.render({"click_id": "C1"}).endswith(f"{expected}?cid=C1&p=7")


def test_weights_share_the_clicks() -> None:
    counts = collections.Counter(choose(SMART, "FR", DESKTOP, "fr", MONDAY_NOON).name for _ in range(4000))  # type: ignore[union-attr]
    assert set(counts) == {"a", "b"}  # weight 0 is never chosen
    assert 2700 < counts["a"] < 3300 and 700 < counts["b"] < 1300  # 3:1, far from any plausible random spread


def test_no_fallback_means_the_links_own_offer() -> None:
    smart = compile_rules({"rules": [{"country": ["US"], "variants": [_url("x")]}]}, HOSTS, IDS, lambda offer: None)
    assert choose(smart, "DE", DESKTOP, "de", MONDAY_NOON) is None


@pytest.mark.parametrize(
    "raw",
    [
        {"rules": [{"variants": [{"name": "evil", "url": "https://evil.example/"}]}]},  # off the allowed hosts
        {"rules": [{"variants": [{"name": "o", "offer_id": 99}]}]},  # no link of the partner on that offer
        {"rules": [{"variants": [{"name": "zero", "url": "https://shop.example.com/", "weight": 0}]}]},
    ],
)
def test_unusable_rules_are_refused(raw: dict) -> None:
    with pytest.raises(ValueError):
        compile_rules(raw, HOSTS, IDS, lambda offer: None)


def test_an_offer_variant_names_the_partners_link() -> None:
    smart = compile_rules({"rules": [{"variants": [{"name": "o", "offer_id": 5}]}]}, HOSTS, IDS, {5: 42}.get)
    chosen = choose(smart, "", DESKTOP, "", MONDAY_NOON)
    assert chosen is not None and (chosen.link_id, chosen.template) == (42, None)
