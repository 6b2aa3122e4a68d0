"""Bot verdicts: HEAD, prefetch, our own signatures, the community's crawler list, generic bots; and bursts.

A request's user agent is classified once per process and the verdict kept (a bounded dict), so a
repeated user agent costs one dict lookup. Bursts are counted in Redis by the script that appends the
event (kernel/redis/scripts.py); `BurstDetector` is the same rule kept in one process, for events Redis
could not count (spooled while it was down).
"""

from __future__ import annotations

import re
from collections import deque

from tracker.crawlers import LIST, Signatures

DEFAULT_BURST_LIMIT = 30  # hits
DEFAULT_BURST_WINDOW_S = 10  # seconds

# Every reason a view or click can be recorded with instead of as a person's; stored events and rollups
# carry these codes, so an existing one is never renamed.
REASONS: dict[str, str] = {
    "head_request": "a HEAD request: a checker or preview, never a visit",
    "prefetch": "a browser prefetch or prerender (Sec-Purpose / Purpose header), not a visit yet",
    "empty_user_agent": "no User-Agent at all",
    "link_preview": "a chat or social network fetching a preview of a shared link",
    "search_crawler": "a search engine's crawler",
    "seo_crawler": "an SEO or marketing tool's crawler",
    "ai_crawler": "an AI company's crawler or an AI agent",
    "ad_crawler": "an advertising network's crawler or ad verification",
    "monitoring": "an uptime, performance or site-audit monitor",
    "feed_reader": "an RSS or news feed reader",
    "archiver": "a web archive",
    "research_crawler": "an academic or research crawler",
    "security_scanner": "a security or vulnerability scanner",
    "headless_browser": "a scripted or headless browser (HeadlessChrome, Puppeteer, Selenium, ...)",
    "http_library": "an HTTP library or API tool (curl, python-requests, Postman, ...)",
    "generic_bot": "a user agent calling itself a bot, crawler or spider",
    "burst": "more hits from one address than the burst limit allows within its window",
}

# Our own signatures: lower-case substrings of the User-Agent, each with its reason. They are checked
# before the community's list and win over it: they keep the reasons events were recorded with before
# the list was added, and add what it lacks.
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
    ("postmanruntime", "http_library"),
    ("insomnia/", "http_library"),
    ("guzzlehttp", "http_library"),
    ("headlesschrome", "headless_browser"),
    ("phantomjs", "headless_browser"),
)
_SIGNATURES = Signatures(BOT_SIGNATURES, LIST)  # compiled once, at import: ~0.1 s
_GENERIC_WORDS = ("bot", "crawler", "spider")  # the generic rule below needs one of these
_GENERIC = re.compile(r"(?<![a-z])(?:bot|crawler|spider)(?![a-z])|[a-z]bot\b|crawler|spider")
_PHONES = re.compile(r"\bcubot\b")  # a phone maker whose model names end in "bot"
_VERDICTS: dict[str, str | None] = {}
_MAX_VERDICTS = 10_000  # ~5 MB at most: user agents are cut to 512 characters


def classify(method: str, user_agent: str, purpose: str) -> str | None:
    """None for a person, else why we think the request is not one (a code of REASONS, bursts aside)."""
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
    verdict = classify_user_agent(user_agent)
    if len(_VERDICTS) >= _MAX_VERDICTS:  # bounded: an attacker's stream of new user agents only empties it
        _VERDICTS.clear()
    _VERDICTS[user_agent] = verdict
    return verdict


def classify_user_agent(user_agent: str) -> str | None:
    """The verdict on a user agent alone, uncached: ours first, then the list, then the generic rule."""
    if not user_agent.strip():
        return "empty_user_agent"
    ua = user_agent.lower()
    listed = _SIGNATURES.reason(user_agent, ua)
    if listed is not None:
        return listed
    if any(word in ua for word in _GENERIC_WORDS) and _GENERIC.search(_PHONES.sub("", ua)):
        return "generic_bot"
    return None


class BurstDetector:
    """Redis's burst rule kept in one process: a hit is a burst when its address already made `limit` hits
    in the `window_s` seconds before it. Exact (a sliding window over the last `limit` hits' times, no
    fixed buckets), and bounded: past `max_addresses` an address not seen within the window is not counted.
    """

    def __init__(
        self,
        limit: int = DEFAULT_BURST_LIMIT,
        window_s: float = DEFAULT_BURST_WINDOW_S,
        max_addresses: int = 100_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._hits: dict[object, deque[float]] = {}  # address -> the times of its last limit + 1 hits
        self._forgot_at = float("-inf")

    def hit(self, address: object, now: float) -> bool:
        """Count a hit of `address` at `now` (seconds); True when it is a burst."""
        times = self._hits.get(address)
        if times is None:
            if len(self._hits) >= self.max_addresses and not self._forget(now):
                return False  # bounded memory: the table is full of addresses hitting right now
            times = self._hits[address] = deque(maxlen=self.limit + 1)
        times.append(now)
        return len(times) > self.limit and now - times[0] < self.window_s

    def _forget(self, now: float) -> bool:
        """Drop the addresses whose last hit is out of the window, at most once a second (a scan of the
        whole table, which a flood of new addresses must not trigger at every hit); True when there is room."""
        if now - self._forgot_at >= 1.0:
            self._forgot_at = now
            cutoff = now - self.window_s
            for address in [a for a, times in self._hits.items() if times[-1] <= cutoff]:
                del self._hits[address]
        return len(self._hits) < self.max_addresses
