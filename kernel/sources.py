"""Conversion sources: which channel may create which kind of conversion on an offer; pure, no I/O.

Channels, by how much they prove about who sent them (docs/conversion-sources.md):
  pixel     the browser pixel /a/{offer} with a click id in its URL   unauthenticated: any visitor can fire it
  cookie    the same pixel attributed by the tracker's cookie         unauthenticated
  postback  /postback, HMAC-signed or with the offer's secret token   authenticated (server to server)
  tune      TUNE's /aff_lsr with a token                              authenticated (server to server)
Safe defaults: pixels create actions only; purchases from a pixel only where the offer allows them (and never
above its pixel maximum, when it has one); refunds only from authenticated server-side sources, whatever the
offer says. Billing then lets an authenticated conversion supersede an unauthenticated one for the same order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CHANNELS = ("pixel", "cookie", "postback", "tune")
KINDS = ("action", "purchase", "refund")
AUTHENTICATED = frozenset(("postback", "tune"))
DEFAULTS: dict[str, frozenset[str]] = {
    "pixel": frozenset(("action",)),
    "cookie": frozenset(("action",)),
    "postback": frozenset(("action", "purchase", "refund")),
    "tune": frozenset(("action", "purchase")),
}
# What no offer can allow: a refund undoes money, so it must come from a source that proves who sent it (TUNE's
# postback cannot even say "refund").
NEVER: dict[str, frozenset[str]] = {
    "pixel": frozenset(("refund",)),
    "cookie": frozenset(("refund",)),
    "tune": frozenset(("refund",)),
}
# The refusal codes these rules produce, for the operator's view and the OpenAPI document.
REFUSALS = {
    "source_not_allowed": "the offer does not take this kind of conversion (action, purchase, refund) from this "
    "channel; refunds come only from authenticated server-side postbacks",
    "amount_over_pixel_max": "a pixel purchase above the offer's pixel maximum",
    "tune_not_enabled": "a TUNE postback on an HMAC offer without a TUNE token of its own (the HMAC secret is "
    "never a plain token)",
}
Sources = Mapping[str, frozenset[str]]


class SourceError(ValueError):
    """A conversion-source setting that cannot be used; the message says why."""


def parse(raw: Any) -> dict[str, frozenset[str]]:
    """The stored setting ({channel: [kinds]}, each channel optional) over the defaults; raises SourceError."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SourceError("conversion_sources must map channels (pixel, cookie, postback, tune) to lists of kinds")
    out = dict(DEFAULTS)
    for channel, kinds in raw.items():
        if channel not in DEFAULTS:
            raise SourceError(f"unknown channel {str(channel)[:40]!r}: use pixel, cookie, postback or tune")
        if not isinstance(kinds, list) or not all(isinstance(k, str) for k in kinds):
            raise SourceError(f"{channel} must be a list of kinds (action, purchase, refund)")
        unknown = sorted(set(kinds) - set(KINDS))
        if unknown:
            raise SourceError(f"{channel}: unknown kind {unknown[0][:40]!r} (action, purchase, refund)")
        forbidden = sorted(set(kinds) & NEVER.get(channel, frozenset()))
        if forbidden:
            raise SourceError(
                f"{channel} cannot create a {forbidden[0]}: refunds come only from authenticated server-side postbacks"
            )
        out[channel] = frozenset(kinds)
    return out


def refusal(sources: Sources, channel: str, kind: str, amount: int | None, pixel_max: int | None) -> str | None:
    """The refusal code for a conversion of `kind` arriving by `channel` (None: allowed)."""
    if kind not in sources.get(channel, DEFAULTS.get(channel, frozenset())) or kind in NEVER.get(channel, ()):
        return "source_not_allowed"
    if channel in ("pixel", "cookie") and kind == "purchase" and pixel_max is not None and (amount or 0) > pixel_max:
        return "amount_over_pixel_max"
    return None


def stored(sources: Sources) -> dict[str, list[str]]:
    """The effective setting as the API shows it: every channel with its kinds, in a fixed order."""
    return {channel: [k for k in KINDS if k in sources[channel]] for channel in CHANNELS}
