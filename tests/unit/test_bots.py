"""Bot classification and burst detection, from tables of real user agents."""

from __future__ import annotations

import pytest

from tracker.bots import BOT_SIGNATURES, BurstDetector, classify

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)
HUMANS = [
    CHROME,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.0 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 "
    "Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; Cubot KingKong 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 "
    "Edg/131.0.0.0",
]
BOTS = [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "search_crawler"),
    ("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", "search_crawler"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "link_preview"),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "link_preview"),
    ("Twitterbot/1.0", "link_preview"),
    ("WhatsApp/2.23.20.0", "link_preview"),
    ("TelegramBot (like TwitterBot)", "link_preview"),
    ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", "link_preview"),
    ("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)", "seo_crawler"),
    ("Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)", "seo_crawler"),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
        "ai_crawler",
    ),
    (
        "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
        "ai_crawler",
    ),
    ("CCBot/2.0 (https://commoncrawl.org/faq/)", "ai_crawler"),
    ("Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)", "monitoring"),
    ("curl/8.5.0", "http_library"),
    ("python-requests/2.32.3", "http_library"),
    ("Go-http-client/2.0", "http_library"),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
        "http_library",
    ),
    ("SomeNewCrawler/1.0 (+https://example.org/crawler)", "generic_bot"),
    ("MegaIndex spider", "generic_bot"),
]


@pytest.mark.parametrize("user_agent", HUMANS)
def test_humans_are_not_bots(user_agent: str) -> None:
    assert classify("GET", user_agent, "") is None


@pytest.mark.parametrize(("user_agent", "reason"), BOTS)
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


def test_every_signature_is_lower_case_with_a_known_reason() -> None:
    reasons = {"link_preview", "search_crawler", "seo_crawler", "ai_crawler", "monitoring", "http_library"}
    for signature, reason in BOT_SIGNATURES:
        assert signature == signature.lower() and reason in reasons


def test_burst_starts_after_the_limit_and_ends_with_the_window() -> None:
    bursts = BurstDetector(limit=3, window_s=10)
    assert [bursts.hit("v", 100.0 + i) for i in range(5)] == [False, False, False, True, True]
    assert bursts.hit("other", 101.0) is False
    assert bursts.hit("v", 110.0) is False  # a new window


def test_burst_memory_is_bounded() -> None:
    bursts = BurstDetector(limit=1, window_s=10, max_visitors=100)
    for i in range(1000):
        bursts.hit(f"v{i}", 5.0)
    assert len(bursts._counts) == 100
