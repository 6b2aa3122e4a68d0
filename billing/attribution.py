"""Attribution: whether a conversion is billable, and to whom; pure, from the event and the offer's terms.

The tracker has already verified the click id's signature and window (a forged or expired id never
carries a link). Here: refused or unattributed conversions, caps, and duplicate orders are rejected
with a reason; everything else is pending until the offer's hold period passes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from billing.fees import FeeError, FeeEvent, FeeLine, commission_lines
from billing.plans import OfferTerms

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Verdict:
    status: str  # pending or rejected
    reason: str | None
    lines: tuple[FeeLine, ...]


def authenticated(event: dict[str, Any]) -> bool:
    """Whether the conversion's source proved who sent it (a signed or token postback, not a pixel). Events
    written before the tracker said so (no `auth`) are judged by their channel."""
    auth = event.get("auth")
    if auth is not None:
        return auth in ("signature", "token")
    return event.get("via") in ("postback", "tune")


def supersedes(event: dict[str, Any], holder_authenticated: bool, holder_status: str) -> bool:
    """An authenticated conversion takes an order id from a pending unauthenticated one (which becomes rejected
    `superseded`); never the other way round, and never once the holder was approved."""
    return authenticated(event) and not holder_authenticated and holder_status == "pending"


def occurred_at(event: dict[str, Any]) -> dt.datetime:
    return _EPOCH + dt.timedelta(milliseconds=event["ts"])


def judge(
    event: dict[str, Any], terms: OfferTerms | None, order_taken: bool, sales_before: int = 0, amount_before: int = 0
) -> Verdict:
    """The verdict on one action or purchase; `order_taken`: a billable conversion already has its order id."""
    if event.get("refusal"):
        return Verdict("rejected", str(event["refusal"]), ())
    if terms is None:
        return Verdict("rejected", "unknown_offer", ())
    if not event.get("partner") or not event.get("link"):
        return Verdict("rejected", "unattributed", ())
    if event.get("over_cap"):
        return Verdict("rejected", "over_cap", ())
    if order_taken:
        return Verdict("rejected", "duplicate_order", ())
    items = tuple((i["sku"], i["qty"], i["price"]) for i in event.get("items") or ())
    try:
        fee_event = FeeEvent(
            kind=event["type"],
            currency=event.get("currency"),
            action=event.get("action") or "",
            amount_minor=event.get("amount") or 0,
            items=items,
            occurred_at=occurred_at(event),
            sales_before=sales_before,
            amount_before_minor=amount_before,
        )
        lines = commission_lines(terms.plan_for(int(event["partner"])), fee_event)
    except FeeError as exc:
        return Verdict("rejected", exc.code, ())
    return Verdict("pending", None, tuple(lines))
