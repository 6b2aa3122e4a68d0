"""Bot, crawler and link-preview classification, and per-visitor burst detection."""

from __future__ import annotations

import re

# (lower-case substring of the User-Agent, reason): a maintained list, one entry per family.
BOT_SIGNATURES: tuple[tuple[str, str], ...] = (
    ("slackbot", "link_preview"),
    ("facebookexternalhit", "link_preview"),
    ("facebookcatalog", "link_preview"),
    ("twitterbot", "link_preview"),
    ("linkedinbot", "link_preview"),
    ("whatsapp", "link_preview"),
    ("telegrambot", "link_preview"),
    ("discordbot", "link_preview"),
    ("skypeuripreview", "link_preview"),
    ("redditbot", "link_preview"),
    ("embedly", "link_preview"),
    ("iframely", "link_preview"),
    ("pinterestbot", "link_preview"),
    ("vkshare", "link_preview"),
    ("snapchat", "link_preview"),
    ("mastodon", "link_preview"),
    ("googlebot", "search_crawler"),
    ("bingbot", "search_crawler"),
    ("yandexbot", "search_crawler"),
    ("baiduspider", "search_crawler"),
    ("duckduckbot", "search_crawler"),
    ("applebot", "search_crawler"),
    ("petalbot", "search_crawler"),
    ("sogou", "search_crawler"),
    ("exabot", "search_crawler"),
    ("seznambot", "search_crawler"),
    ("ahrefsbot", "seo_crawler"),
    ("semrushbot", "seo_crawler"),
    ("mj12bot", "seo_crawler"),
    ("dotbot", "seo_crawler"),
    ("blexbot", "seo_crawler"),
    ("dataforseobot", "seo_crawler"),
    ("gptbot", "ai_crawler"),
    ("chatgpt-user", "ai_crawler"),
    ("claudebot", "ai_crawler"),
    ("anthropic-ai", "ai_crawler"),
    ("ccbot", "ai_crawler"),
    ("perplexitybot", "ai_crawler"),
    ("bytespider", "ai_crawler"),
    ("google-extended", "ai_crawler"),
    ("uptimerobot", "monitoring"),
    ("pingdom", "monitoring"),
    ("statuscake", "monitoring"),
    ("site24x7", "monitoring"),
    ("curl/", "http_library"),
    ("wget/", "http_library"),
    ("python-requests", "http_library"),
    ("python-httpx", "http_library"),
    ("python-urllib", "http_library"),
    ("aiohttp", "http_library"),
    ("go-http-client", "http_library"),
    ("okhttp", "http_library"),
    ("java/", "http_library"),
    ("libwww-perl", "http_library"),
    ("axios/", "http_library"),
    ("node-fetch", "http_library"),
    ("scrapy", "http_library"),
    ("headlesschrome", "http_library"),
    ("phantomjs", "http_library"),
)
_SIGNATURES = re.compile("|".join(re.escape(s) for s, _ in BOT_SIGNATURES))
_REASONS = dict(BOT_SIGNATURES)
_VERDICTS: dict[str, str | None] = {}
_MAX_VERDICTS = 10_000
_GENERIC = re.compile(r"(?<![a-z])(?:bot|crawler|spider)(?![a-z])|[a-z]bot\b|crawler|spider")
_PHONES = re.compile(r"\bcubot\b")


def classify(method: str, user_agent: str, purpose: str) -> str | None:
    """None for a human, else why we think the request is not one."""
    if method == "HEAD":
        return "head_request"
    if purpose:
        lowered = purpose.lower()
        if "prefetch" in lowered or "preview" in lowered or "prerender" in lowered:
            return "prefetch"
    try:
        return _VERDICTS[user_agent]
    except KeyError:
        pass
    verdict = _classify_ua(user_agent)
    if len(_VERDICTS) >= _MAX_VERDICTS:
        _VERDICTS.clear()
    _VERDICTS[user_agent] = verdict
    return verdict


def _classify_ua(user_agent: str) -> str | None:
    if not user_agent.strip():
        return "empty_user_agent"
    ua = user_agent.lower()
    match = _SIGNATURES.search(ua)
    if match is not None:
        return _REASONS[match.group(0)]
    if _GENERIC.search(_PHONES.sub("", ua)):
        return "generic_bot"
    return None


class BurstDetector:
    """More than `limit` hits of one visitor within a fixed window of `window_s` seconds are a burst."""

    def __init__(self, limit: int = 20, window_s: float = 10.0, max_visitors: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_visitors = max_visitors
        self._window = -1
        self._counts: dict[str, int] = {}

    def hit(self, visitor: str, now: float) -> bool:
        window = int(now // self.window_s)
        if window != self._window:
            self._window = window
            self._counts = {}
        counts = self._counts
        n = counts.get(visitor, 0) + 1
        if n == 1 and len(counts) >= self.max_visitors:
            return False  # bounded memory: past the bound a new visitor is not tracked this window
        counts[visitor] = n
        return n > self.limit
