"""Who a conversion credits: its click id, the tracker cookie, a coupon code, and the offer's coupon policy; pure.

The order (docs/attribution.md):
1. the click id the conversion names (pixel `click_id`, postback `click_id`, TUNE `transaction_id`);
2. else the tracker's first-party cookie `cm_{offer}` (pixel only: a server has no cookie);
3. the coupon code (`coupon`, TUNE `promo_code`), weighed against the click by the offer's coupon policy:
   - `always`: a valid code credits its partner, whoever had the click;
   - `no_click`: a valid code credits its partner only when no click is attributed;
   - `same_partner`: the code credits nobody on its own; the click's partner is credited as usual, and the
     code is recorded with it.
A click id that fails verification counts as no click when a coupon is given. A conversion credited by a coupon
carries no click id, sub ids or country (the click, if any, was someone else's or is not needed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

POLICIES = ("always", "no_click", "same_partner")
_CODE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Coupon:
    """An active code of one partner on one offer, as the tracker holds it."""

    code: str
    partner_id: int
    link_id: int | None  # the partner's link on the offer (its lowest id), for the conversion's link and shard
    valid_from: float | None  # Unix seconds; None: open-ended
    valid_until: float | None
    usable: bool  # the partner is approved in the merchant's programme


class Credit(NamedTuple):
    by: str  # click, cookie or coupon
    partner_id: int
    link_id: int | None
    click_id: str | None


def normalize(text: str) -> str:
    """Codes are case-insensitive and compared without surrounding spaces."""
    return text.strip().upper()


def valid_code(code: str) -> bool:
    return bool(_CODE.match(code))


def state(coupon: Coupon | None, now: float) -> str:
    """valid, unknown, inactive (its partner is not approved), not_yet_valid or expired."""
    if coupon is None:
        return "unknown"
    if not coupon.usable:
        return "inactive"
    if coupon.valid_from is not None and now < coupon.valid_from:
        return "not_yet_valid"
    if coupon.valid_until is not None and now >= coupon.valid_until:
        return "expired"
    return "valid"


def decide(policy: str, click_partner: int | None, coupon_partner: int | None) -> str | None:
    """`click`, `coupon` or None (nobody) from the click's partner and a valid coupon's partner (None: absent)."""
    if coupon_partner is None or policy == "same_partner":
        return "click" if click_partner is not None else None
    if click_partner is None:
        return "coupon"
    if policy == "no_click" or click_partner == coupon_partner:
        return "click"  # the same partner: credited by its click, which keeps the click's sub ids and country
    return "coupon"  # policy always: the code's partner, not the other partner's click
