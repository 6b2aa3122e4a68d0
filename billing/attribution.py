"""Attribution: whether a conversion is billable, and to whom; pure, from the event and the offer's terms.

The tracker has already verified the click id's signature and window (a forged or expired id never
carries a link). Here: refused or unattributed conversions, conversions on a click recorded as a bot,
caps, duplicate orders and repeated actions are rejected with a reason; everything else is pending
until the offer's hold period passes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kernel.fees import FeeError, FeeEvent, FeeLine, commission
from kernel.plans import OfferTerms

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Verdict:
    status: str  # pending or rejected
    reason: str | None
    lines: tuple[FeeLine, ...]
    note: str | None = None  # why part of it earns nothing (an item without a retail price...)


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
    event: dict[str, Any],
    terms: OfferTerms | None,
    order_taken: bool,
    sales_before: int = 0,
    amount_before: int = 0,
    action_taken: bool = False,
) -> Verdict:
    """The verdict on one action or purchase; `order_taken`: a billable conversion already has its order id;
    `action_taken`: an action without order id, already billable for this click and name (no repeats paid).
    `event["click_bot"]`: the bot reason of the click it came from, when that click was recorded as a bot."""
    if event.get("refusal"):
        return Verdict("rejected", str(event["refusal"]), ())
    if terms is None:
        return Verdict("rejected", "unknown_offer", ())
    if not event.get("partner") or not (event.get("link") or event.get("credited_by") == "coupon"):
        return Verdict("rejected", "unattributed", ())
    if event.get("click_bot"):
        return Verdict("rejected", "bot_click", ())
    if event.get("over_cap"):
        return Verdict("rejected", "over_cap", ())
    if order_taken:
        return Verdict("rejected", "duplicate_order", ())
    if action_taken:
        return Verdict("rejected", "duplicate_action", ())
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
        earned = commission(terms.plan_for(int(event["partner"])), fee_event)
    except FeeError as exc:
        return Verdict("rejected", exc.code, ())
    return Verdict("pending", None, earned.lines, "; ".join(earned.notes) or None)
