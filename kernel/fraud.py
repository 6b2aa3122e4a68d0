"""Fraud rules: whether an otherwise billable conversion is held for the operator's review; pure, no I/O.

Evaluated by ingest (billing/derive.py) on conversions attribution found billable, never on clicks: a rule
never costs a click. A hit makes the conversion `held` with the rule's name as its reason; the operator
approves it (it becomes pending and follows the offer's lock period) or rejects it with a reason, and an
unresolved hold expires after `hold_days` by `on_expiry` (docs/attribution.md). Thresholds per offer
(`offers.fraud_rules`, schemas/offers/fraud.schema.json) over these defaults:

    too_soon_seconds      0      hold when the conversion came less than this many seconds after its click; 0: off
    rate_factor           0      hold when the partner's conversion rate on the offer is more than this many
                                 times the other partners' (over rate_days, once the partner has rate_min_clicks
                                 unique clicks); 0: off
    rate_min_clicks       100
    rate_days             30
    self_referral         true   hold when the customer is the partner (its customer id at the merchant, or the
                                 SHA-256 of its e-mail address)
    multi_partner         true   hold when the same customer converted through another partner of the merchant
    multi_partner_days    30     within this many days
    datacenter            true   hold when the click came from a datacenter network (CLICKMINT_ASN_DB configured)
    datacenter_asns       []     more autonomous system numbers counted as datacenters, beside DATACENTER_ASNS
    forbidden_referrers   []     hold when the click's referring host is one of these or below one of them
    hold_days             30     an unresolved hold expires after this many days...
    on_expiry             reject ...rejected (reason hold_expired) or approved (it becomes pending)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("clickmint.billing.fraud")

RULES = ("too_soon", "conversion_rate", "self_referral", "multi_partner", "datacenter", "forbidden_referrer")
# Well-known cloud and hosting networks (AWS, Google Cloud, Azure, DigitalOcean, OVH, Hetzner, Linode/Akamai,
# Vultr, Oracle Cloud, Alibaba Cloud, Scaleway, Contabo, Leaseweb, M247): people rarely buy from them.
DATACENTER_ASNS = frozenset(
    (16509, 14618, 8987, 396982, 15169, 19527, 8075, 14061, 16276, 24940, 63949, 20473, 31898, 45102, 12876,
     51167, 60781, 28753, 9009)
)  # fmt: skip
DEFAULTS: dict[str, Any] = {
    "too_soon_seconds": 0,
    "rate_factor": 0,
    "rate_min_clicks": 100,
    "rate_days": 30,
    "self_referral": True,
    "multi_partner": True,
    "multi_partner_days": 30,
    "datacenter": True,
    "datacenter_asns": [],
    "forbidden_referrers": [],
    "hold_days": 30,
    "on_expiry": "reject",
}


@dataclass(frozen=True)
class Rules:
    """One offer's thresholds, defaults filled in."""

    too_soon_seconds: int = 0
    rate_factor: int = 0
    rate_min_clicks: int = 100
    rate_days: int = 30
    self_referral: bool = True
    multi_partner: bool = True
    multi_partner_days: int = 30
    datacenter: bool = True
    datacenter_asns: frozenset[int] = DATACENTER_ASNS
    forbidden_referrers: tuple[str, ...] = ()
    hold_days: int = 30
    on_expiry: str = "reject"

    @classmethod
    def load(cls, offer_id: int, raw: dict[str, Any] | None) -> Rules:
        """`parse`, or the defaults (logged) when the stored value is unusable: ingest never stops on it."""
        try:
            return cls.parse(raw)
        except (ValueError, TypeError) as exc:
            log.error("offer %s has unusable fraud rules, the defaults apply: %s", offer_id, exc)
            return cls()

    @classmethod
    def parse(cls, raw: dict[str, Any] | None) -> Rules:
        """From the stored JSON (validated by the portal against fraud.schema.json; unknown keys ignored)."""
        merged = {**DEFAULTS, **(raw or {})}
        return cls(
            too_soon_seconds=int(merged["too_soon_seconds"]),
            rate_factor=int(merged["rate_factor"]),
            rate_min_clicks=int(merged["rate_min_clicks"]),
            rate_days=int(merged["rate_days"]),
            self_referral=bool(merged["self_referral"]),
            multi_partner=bool(merged["multi_partner"]),
            multi_partner_days=int(merged["multi_partner_days"]),
            datacenter=bool(merged["datacenter"]),
            datacenter_asns=DATACENTER_ASNS | frozenset(int(n) for n in merged["datacenter_asns"]),
            forbidden_referrers=tuple(str(h).lower().strip(".") for h in merged["forbidden_referrers"]),
            hold_days=int(merged["hold_days"]),
            on_expiry=str(merged["on_expiry"]),
        )


@dataclass
class Facts:
    """What ingest found out about one conversion; None where it could not be known."""

    seconds_since_click: float | None = None
    customer_is_partner: bool = False
    other_partner: bool = False  # the customer converted through another partner within multi_partner_days
    asn: int | None = None  # of the click's network
    referrer: str = ""  # the click's referring host
    partner_rate: tuple[int, int] = (0, 0)  # conversions, unique clicks (rate_days)
    offer_rate: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)


def check(rules: Rules, facts: Facts) -> str | None:
    """The first rule the conversion trips (its reason for being held), or None."""
    if rules.too_soon_seconds and facts.seconds_since_click is not None:
        if facts.seconds_since_click < rules.too_soon_seconds:
            return "too_soon"
    if rules.self_referral and facts.customer_is_partner:
        return "self_referral"
    if rules.multi_partner and facts.other_partner:
        return "multi_partner"
    if rules.datacenter and facts.asn is not None and facts.asn in rules.datacenter_asns:
        return "datacenter"
    if facts.referrer and _forbidden(facts.referrer, rules.forbidden_referrers):
        return "forbidden_referrer"
    if rules.rate_factor and _rate_too_high(rules, facts):
        return "conversion_rate"
    return None


def _forbidden(host: str, forbidden: tuple[str, ...]) -> bool:
    host = host.lower().strip(".")
    return any(host == f or host.endswith("." + f) for f in forbidden)


def _rate_too_high(rules: Rules, facts: Facts) -> bool:
    """partner conversions / partner clicks > factor * offer conversions / offer clicks, in integers."""
    p_conv, p_clicks = facts.partner_rate
    o_conv, o_clicks = facts.offer_rate
    if p_clicks < rules.rate_min_clicks or o_clicks <= 0 or o_conv <= 0:
        return False
    return p_conv * o_clicks > rules.rate_factor * o_conv * p_clicks
