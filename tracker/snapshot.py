"""The tracker's configuration as data: links, offers and creatives, one immutable snapshot at a time.

Pure (no I/O): tracker/config.py loads a snapshot from PostgreSQL and keeps it fresh; the request paths
(tracker/endpoints.py, tracker/conversions.py) read it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from kernel.caps import Limit
from kernel.crediting import Coupon
from kernel.macros import Template
from kernel.sources import DEFAULTS as DEFAULT_SOURCES
from tracker.smartlinks import SmartLink


@dataclass(frozen=True, slots=True)
class Offer:
    id: int
    merchant_id: int
    active: bool
    destination: Template
    fallback_url: str | None
    allowed_hosts: frozenset[str]
    window_s: int
    currency: str
    caps: tuple[Limit, ...]
    fee_plan: dict[str, Any]
    postback_security: str
    postback_secret: str = field(repr=False)
    postback_ips: tuple[str, ...]
    sources: dict[str, frozenset[str]] = field(default_factory=lambda: dict(DEFAULT_SOURCES))  # kernel/sources.py
    pixel_max_minor: int | None = None  # the most a pixel purchase may claim, in the offer's minor units
    tune_token: str | None = field(default=None, repr=False)  # TUNE's own token on an HMAC offer
    attribution_model: str = "last_click"  # or first_click: a repeat click in the window keeps the first id
    coupon_policy: str = "always"  # tracker/crediting.py
    coupons: dict[str, Coupon] = field(default_factory=dict)  # upper-case code -> its active coupon
    record_referrer: bool = False  # its fraud rules forbid referrers: clicks record their referring host


@dataclass(frozen=True, slots=True)
class Creative:
    id: int
    content_type: str
    body: bytes
    etag: bytes


@dataclass(frozen=True, slots=True)
class Link:
    id: int
    code: str
    partner_id: int
    offer: Offer
    creative: Creative | None
    active: bool  # link active, offer active and the partner approved in the merchant's programme
    shard: int
    # Precomputed so the hot path formats nothing that does not change per request.
    ids: dict[str, str]
    smart: SmartLink | None = None  # a smart link's compiled rules (tracker/smartlinks.py)


@dataclass(frozen=True, slots=True)
class Snapshot:
    version: int
    links: dict[str, Link]
    links_by_id: dict[int, Link]
    offers: dict[int, Offer]


EMPTY = Snapshot(0, {}, {}, {})


def shard_of(link_id: int, shards: int) -> int:
    """Events of one link always go to one shard: its order is kept and ingest can decide per link."""
    return zlib.crc32(link_id.to_bytes(8, "big")) % shards
