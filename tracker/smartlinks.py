"""Smart links: one link whose destination is chosen per click by ordered rules; compiled once, pure.

A link's `smart_rules` (schemas/offers/smart_link.schema.json, docs/attribution.md) are compiled when the
configuration loads (tracker/config.py): each rule's conditions become frozensets and integers, each rule's
variants a cumulative weight table. Per click, `choose` walks the rules in order and takes the first whose
every condition matches (country, device, OS, language, UTC hours, ISO weekdays), then one of its variants by
weight; no rule matching: the fallback, else the link's own offer. A variant is a URL on the offer's allowed
hosts (macros allowed) or another offer of the same merchant, reached through the partner's own link on it.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kernel.macros import Template, safe_deep_link

DEVICES = ("mobile", "tablet", "desktop")
SYSTEMS = ("ios", "android", "other")
MAX_RULES = 50
MAX_VARIANTS = 20
_random = random.random  # ~10x cheaper than randrange; int(random() * total) is uniform on 0..total-1


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    template: Template | None  # a URL on the offer's allowed hosts (the link's ids bound)
    link_id: int | None  # or the partner's link on another offer of the merchant


@dataclass(frozen=True, slots=True)
class Rule:
    countries: frozenset[str] | None  # None: any
    devices: frozenset[str] | None
    systems: frozenset[str] | None
    languages: frozenset[str] | None
    hours: tuple[int, int] | None  # [from, to) in UTC hours; from > to wraps past midnight
    weekdays: frozenset[int] | None  # ISO: 1 Monday .. 7 Sunday, UTC
    variants: tuple[Variant, ...]
    cumulative: tuple[int, ...]  # running sum of the variants' weights
    total: int


@dataclass(frozen=True, slots=True)
class SmartLink:
    rules: tuple[Rule, ...]
    fallback: Variant | None  # None: the link's own offer

    @property
    def names(self) -> frozenset[str]:
        return frozenset(v.name for r in self.rules for v in r.variants) | (
            {self.fallback.name} if self.fallback else set()
        )


@lru_cache(maxsize=8192)
def device_of(user_agent: str) -> tuple[str, str]:
    """(mobile | tablet | desktop, ios | android | other) from a user agent; cached, user agents repeat."""
    ua = user_agent
    if "iPad" in ua or ("Macintosh" in ua and "Mobile/" in ua):  # iPadOS asks for the desktop site
        return "tablet", "ios"
    if "iPhone" in ua or "iPod" in ua:
        return "mobile", "ios"
    if "Android" in ua:
        return ("mobile" if "Mobile" in ua else "tablet"), "android"
    if "Tablet" in ua or "Kindle" in ua or "Silk/" in ua:
        return "tablet", "other"
    if "Mobi" in ua or "Opera Mini" in ua or "Windows Phone" in ua:
        return "mobile", "other"
    return "desktop", "other"


@lru_cache(maxsize=4096)
def language_of(accept_language: str) -> str:
    """The primary subtag of the first language the browser prefers ("de" from "de-CH,de;q=0.9,en;q=0.8")."""
    first = accept_language.split(",", 1)[0].split(";", 1)[0].strip()
    return first.split("-", 1)[0].lower()[:8]


def choose(smart: SmartLink, country: str, user_agent: str, accept_language: str, now: int) -> Variant | None:
    """The variant of the first matching rule (by weight), else the fallback (None: the link's own offer)."""
    device = system = language = None
    for rule in smart.rules:
        if rule.countries is not None and country not in rule.countries:
            continue
        if rule.devices is not None or rule.systems is not None:
            if device is None:
                device, system = device_of(user_agent)
            if rule.devices is not None and device not in rule.devices:
                continue
            if rule.systems is not None and system not in rule.systems:
                continue
        if rule.languages is not None:
            if language is None:
                language = language_of(accept_language)
            if language not in rule.languages:
                continue
        if rule.hours is not None:
            hour = now % 86400 // 3600
            start, end = rule.hours
            if not (start <= hour < end if start < end else hour >= start or hour < end):
                continue
        if rule.weekdays is not None and (now // 86400 + 3) % 7 + 1 not in rule.weekdays:
            continue
        variants = rule.variants
        if len(variants) == 1:
            return variants[0]
        return variants[bisect.bisect_left(rule.cumulative, int(_random() * rule.total))]
    return smart.fallback


def compile_rules(
    raw: Mapping[str, Any],
    allowed_hosts: frozenset[str],
    ids: Mapping[str, str],
    link_for_offer: Callable[[int], int | None],
) -> SmartLink:
    """Compile stored rules (already validated by the schema on save); raises ValueError on anything unusable:
    a URL off the offer's allowed hosts, an offer without the partner's link, a rule without weight."""
    rules = []
    for n, item in enumerate(raw.get("rules") or ()):
        if n >= MAX_RULES:
            raise ValueError(f"at most {MAX_RULES} rules")
        variants = tuple(_variant(v, allowed_hosts, ids, link_for_offer) for v in item.get("variants") or ())
        weights = [int(v.get("weight", 1)) for v in item.get("variants") or ()]
        if not variants or len(variants) > MAX_VARIANTS or sum(weights) <= 0 or min(weights) < 0:
            raise ValueError(f"rule {n + 1}: 1 to {MAX_VARIANTS} variants with weights adding up to more than 0")
        cumulative, total = [], 0
        for weight in weights:
            total += weight
            cumulative.append(total - 1)
        hours = item.get("hours")
        rules.append(
            Rule(
                _set(item, "country", str.upper),
                _set(item, "device", str.lower),
                _set(item, "os", str.lower),
                _set(item, "language", str.lower),
                (int(hours["from"]), int(hours["to"])) if hours else None,
                frozenset(int(d) for d in item["weekdays"]) if item.get("weekdays") else None,
                variants,
                tuple(cumulative),
                total,
            )
        )
    fallback = raw.get("fallback")
    return SmartLink(tuple(rules), _variant(fallback, allowed_hosts, ids, link_for_offer) if fallback else None)


def _set(item: Mapping[str, Any], key: str, norm: Callable[[str], str]) -> frozenset[str] | None:
    values = item.get(key)
    return frozenset(norm(str(v)) for v in values) if values else None


def _variant(
    raw: Mapping[str, Any],
    allowed_hosts: frozenset[str],
    ids: Mapping[str, str],
    link_for_offer: Callable[[int], int | None],
) -> Variant:
    name = str(raw.get("name") or "")[:64]
    if raw.get("url"):
        url = str(raw["url"])
        if safe_deep_link(url, allowed_hosts) is None:
            raise ValueError(f"variant {name!r}: {url[:80]!r} is not on the offer's allowed hosts")
        return Variant(name, Template(url).bind(ids), None)
    offer_id = raw.get("offer_id")
    link_id = link_for_offer(int(offer_id)) if offer_id is not None else None
    if link_id is None:
        raise ValueError(f"variant {name!r}: the partner has no active link on offer {offer_id} of this merchant")
    return Variant(name, None, link_id)
