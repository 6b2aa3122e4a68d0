"""Bot verdicts and the in-process burst rule, from tables of real user agents and hit times."""

from __future__ import annotations

import re

import pytest

from loadtests.user_agents import BOTS, PEOPLE
from tracker import bots
from tracker.bots import BOT_SIGNATURES, REASONS, BurstDetector, classify, classify_user_agent
from tracker.crawlers import LIST, LIST_VERSION, TAG_REASONS, alternatives, reason_of, required_literal

CHROME = PEOPLE[0][1]


@pytest.mark.parametrize("user_agent", [ua for _, ua in PEOPLE], ids=[name for name, _ in PEOPLE])
def test_people_are_not_bots(user_agent: str) -> None:
    assert classify("GET", user_agent, "") is None


@pytest.mark.parametrize(("user_agent", "reason"), [(ua, r) for _, ua, r in BOTS], ids=[name for name, _, _ in BOTS])
def test_bots_get_their_reason(user_agent: str, reason: str) -> None:
    assert classify("GET", user_agent, "") == reason


@pytest.mark.parametrize(
    ("method", "user_agent", "purpose", "reason"),
    [
        ("HEAD", CHROME, "", "head_request"),
        ("GET", CHROME, "prefetch", "prefetch"),
        ("GET", CHROME, "prefetch;prerender", "prefetch"),
        ("GET", CHROME, "preview", "prefetch"),
        ("GET", "", "", "empty_user_agent"),
        ("GET", "   ", "", "empty_user_agent"),
        ("GET", CHROME, "something-else", None),
    ],
)
def test_requests_that_are_not_visits(method: str, user_agent: str, purpose: str, reason: str | None) -> None:
    assert classify(method, user_agent, purpose) == reason


def test_every_example_of_the_list_is_a_bot() -> None:
    """Each of the list's ~2,000 example user agents, through the compiled matcher: none passes as a person."""
    missed = [ua for entry in LIST for ua in entry["instances"] if classify_user_agent(ua) is None]
    assert not missed and len(LIST) > 1000, missed[:5]


def test_the_literal_of_a_pattern_is_in_everything_it_matches() -> None:
    """The matcher finds a pattern only through its literal: that literal must be in every match of it."""
    for entry in LIST:
        pattern = re.compile(entry["pattern"])
        literals = [required_literal(alternative) for alternative in alternatives(entry["pattern"])]
        for ua in entry["instances"]:
            if pattern.search(ua):
                assert any(literal in ua for literal in literals), (entry["pattern"], literals, ua)


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        ("Googlebot\\/", "Googlebot/"),
        ("AdsBot-Google([^-]|$)", "AdsBot-Google"),
        ("^Apache-HttpClient", "Apache-HttpClient"),
        ("S[eE][mM]rushBot", "rushBot"),
        ("(sistrix|SISTRIX) [cC]rawler", "rawler"),
        ("BlogTraffic\\/\\d\\.\\d+ Feed-Fetcher", " Feed-Fetcher"),
        ("Current[\\s\\S]*RSS Reader", "RSS Reader"),
        ("colou?r-checker", "r-checker"),
        ("ab{2,3}cdef", "cdef"),
    ],
)
def test_required_literals(pattern: str, literal: str) -> None:
    assert required_literal(pattern) == literal


def test_top_level_alternatives_are_split_and_nested_ones_kept() -> None:
    assert alternatives("Automaton|Newsify Feed Fetcher") == ["Automaton", "Newsify Feed Fetcher"]
    assert alternatives("(a|b)c|[|]d") == ["(a|b)c", "[|]d"]


@pytest.mark.parametrize(
    ("tags", "reason"),
    [
        (["search-engine"], "search_crawler"),
        (["seo"], "seo_crawler"),
        (["ai-crawler", "search-engine"], "ai_crawler"),
        (["ai-crawler", "social-preview"], "ai_crawler"),
        (["academic", "scanner"], "security_scanner"),
        (["browser-automation"], "headless_browser"),
        ([], "generic_bot"),
        (["a-tag-added-later"], "generic_bot"),
    ],
)
def test_tags_become_reasons(tags: list[str], reason: str) -> None:
    assert reason_of(tags) == reason


def test_every_reason_is_documented_and_our_signatures_are_lower_case() -> None:
    assert set(TAG_REASONS.values()) <= set(REASONS)
    for signature, reason in BOT_SIGNATURES:
        assert signature == signature.lower() and reason in REASONS
    for tags in {tuple(entry["tags"]) for entry in LIST}:
        assert reason_of(list(tags)) in REASONS
    assert re.fullmatch(r"\d+\.\d+\.\d+", LIST_VERSION)


def test_a_verdict_is_kept_per_user_agent_and_the_cache_is_bounded() -> None:
    bots._VERDICTS.clear()
    assert classify("GET", "curl/8.5.0", "") == "http_library"
    assert bots._VERDICTS["curl/8.5.0"] == "http_library"  # the next request with it is one dict lookup
    for i in range(bots._MAX_VERDICTS + 10):
        classify("GET", f"Mozilla/5.0 test-{i}", "")
    assert 0 < len(bots._VERDICTS) <= bots._MAX_VERDICTS


def test_a_burst_is_the_hit_after_limit_hits_within_the_window() -> None:
    bursts = BurstDetector(limit=3, window_s=10)
    assert [bursts.hit("a", 100.0 + i) for i in range(5)] == [False, False, False, True, True]
    assert bursts.hit("b", 104.5) is False  # per address
    # Four hits within less than 10 s make a burst; the fourth 10 s or more after the first does not.
    assert [bursts.hit("c", t) for t in (0.0, 1.0, 2.0, 9.999)] == [False, False, False, True]
    assert [bursts.hit("d", t) for t in (0.0, 1.0, 2.0, 10.0)] == [False, False, False, False]
    assert bursts.hit("d", 10.5) is True  # 1.0, 2.0, 10.0 and 10.5: four within 9.5 s


@pytest.mark.parametrize("start", [9.5, 9.99, 19.7, 29.0])
def test_no_boundary_lets_a_burst_through(start: float) -> None:
    """40 hits in under a second, wherever they fall against any 10 s grid: the 10 past the limit are bursts."""
    bursts = BurstDetector(limit=30, window_s=10)
    verdicts = [bursts.hit("v", start + i * 0.024) for i in range(40)]
    assert verdicts == [False] * 30 + [True] * 10


def test_a_steady_visitor_under_the_limit_is_never_a_burst() -> None:
    bursts = BurstDetector(limit=30, window_s=10)
    assert not any(bursts.hit("v", i * 0.34) for i in range(1000))  # 29.4 hits in any 10 s


def test_burst_memory_is_bounded() -> None:
    bursts = BurstDetector(limit=1, window_s=10, max_addresses=100)
    for i in range(1000):
        bursts.hit(f"v{i}", 5.0)
    assert len(bursts._hits) == 100
    bursts.hit("later", 20.0)  # the others are out of the window: forgotten, room again
    assert list(bursts._hits) == ["later"]
