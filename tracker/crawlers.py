"""The community's crawler list (PyPI `crawler-user-agents`) compiled once into one fast matcher, with a reason each.

The list holds ~1,500 case-sensitive regular expressions, each tagged (search-engine, seo, ai-crawler, ...).
Joined into one alternation, Python's `re` tries every one at every position of a user agent: ~400 µs for
a browser's. So each pattern is reduced to a literal that every match of it must contain, the literals are
merged into one trie-shaped regex (one branch per distinct next character, ~8 µs for a browser's user agent,
which matches nothing), and only a pattern whose literal was found is run, to confirm.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from crawleruseragents import CRAWLER_USER_AGENTS_DATA

try:
    LIST_VERSION = version("crawler-user-agents")
except PackageNotFoundError:  # imported from a source tree without its metadata
    LIST_VERSION = "unknown"

# The list's tags, most specific first, and the reason each is recorded with (tracker/bots.py REASONS).
# A pattern with two tags, or a user agent matching patterns of several, takes the first in this order.
TAG_REASONS: dict[str, str] = {
    "ai-crawler": "ai_crawler",
    "social-preview": "link_preview",
    "browser-automation": "headless_browser",
    "http-library": "http_library",
    "advertising": "ad_crawler",
    "monitoring": "monitoring",
    "scanner": "security_scanner",
    "feed-reader": "feed_reader",
    "archiver": "archiver",
    "academic": "research_crawler",
    "search-engine": "search_crawler",
    "seo": "seo_crawler",
}
LIST: list[dict] = CRAWLER_USER_AGENTS_DATA  # its entries: pattern, tags, instances, ...
_PRIORITY = {reason: rank for rank, reason in enumerate(TAG_REASONS.values())}
_END = ""  # the key of a trie node that ends a literal: the patterns that literal stands for


@dataclass(frozen=True, slots=True)
class Crawler:
    pattern: re.Pattern[str] | None  # None: one of our own signatures, a plain substring
    reason: str


def reason_of(tags: list[str]) -> str:
    """The reason of a pattern from its tags (an untagged pattern is a generic bot)."""
    known = [TAG_REASONS[tag] for tag in tags if tag in TAG_REASONS]
    return min(known, key=_PRIORITY.__getitem__) if known else "generic_bot"


def alternatives(pattern: str) -> list[str]:
    """The pattern split at its top-level `|` (a match of it is a match of one of these)."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "[":
            i = _class_end(pattern, i)
            continue
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:i])
    return parts


def required_literal(pattern: str) -> str:
    """The longest run of plain characters every match of this pattern (one without a top-level `|`) contains.

    Groups, classes, anchors, `.` and escapes like \\d break a run; a quantifier drops the character before it.
    """
    atoms: list[str | None] = []  # None: anything that is not one required character
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            escaped = pattern[i + 1]
            atoms.append(None if escaped.isalnum() else escaped)
            i += 2
        elif ch == "[":
            atoms.append(None)
            i = _class_end(pattern, i)
        elif ch == "(":
            atoms.append(None)
            i = _group_end(pattern, i)
        elif ch in "?*{":
            if atoms:
                atoms[-1] = None
            atoms.append(None)
            i = pattern.index("}", i) + 1 if ch == "{" else i + 1
        elif ch in "+^$.":
            atoms.append(None)
            i += 1
        else:
            atoms.append(ch)
            i += 1
    runs = "".join(a if a is not None else "\0" for a in atoms).split("\0")
    return max(runs, key=len)


def _class_end(pattern: str, i: int) -> int:
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while pattern[j] != "]":
        j += 2 if pattern[j] == "\\" else 1
    return j + 1


def _group_end(pattern: str, i: int) -> int:
    depth, j = 0, i
    while True:
        ch = pattern[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "[":
            j = _class_end(pattern, j)
            continue
        depth += ch == "("
        depth -= ch == ")"
        j += 1
        if depth == 0:
            return j


def _trie_regex(node: dict[str, dict]) -> str:
    branches = [re.escape(ch) + _trie_regex(child) for ch, child in sorted(node.items()) if ch != _END]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if _END in node else body


class Signatures:
    """Our own signatures and the list's patterns, found in one pass over the lower-cased user agent.

    Ours are lower-case substrings: found, they are the verdict, whatever else matches. The list's
    patterns are found by their literals, lower-cased too (so ~40 branches per position, not ~70), then
    confirmed by running the pattern, case-sensitive as its authors wrote it, on the user agent itself.
    """

    def __init__(self, own: Iterable[tuple[str, str]], listed: list[dict]) -> None:
        self.size = len(listed)
        self._root: dict[str, Any] = {}
        self._always: list[Crawler] = []  # patterns without a literal of 3+ characters: run on every user agent
        for signature, reason in own:
            self._add(signature, Crawler(None, reason))
        for entry in listed:
            crawler = Crawler(re.compile(entry["pattern"]), reason_of(entry.get("tags", [])))
            for alternative in alternatives(entry["pattern"]):
                literal = required_literal(alternative).lower()
                if len(literal) < 3:
                    self._always.append(crawler)
                else:
                    self._add(literal, crawler)
        self._search = re.compile(_trie_regex(self._root)).search

    def _add(self, literal: str, crawler: Crawler) -> None:
        node = self._root
        for ch in literal:
            node = node.setdefault(ch, {})
        node.setdefault(_END, []).append(crawler)

    def reason(self, user_agent: str, lowered: str) -> str | None:
        """The verdict on a user agent (and its lower-cased self): our signature's reason, else the most
        specific reason of the list's patterns it matches, else None."""
        found: str | None = None
        for crawler in self._always:
            if crawler.pattern.search(user_agent):  # type: ignore[union-attr]
                found = _better(found, crawler.reason)
        search, pos = self._search, 0
        while (hit := search(lowered, pos)) is not None:  # a browser's user agent: no hit, one scan
            start = hit.start()
            node = self._root
            for ch in lowered[start:]:  # every literal that starts here, not only the longest
                node = node.get(ch)  # type: ignore[assignment]
                if node is None:
                    break
                for crawler in node.get(_END, ()):
                    if crawler.pattern is None:
                        return crawler.reason  # ours: the verdict
                    if crawler.pattern.search(user_agent):
                        found = _better(found, crawler.reason)
            pos = start + 1
        return found


def _better(found: str | None, reason: str) -> str:
    return reason if found is None or _PRIORITY.get(reason, 99) < _PRIORITY.get(found, 99) else found
