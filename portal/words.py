"""The stored words pages show as they are (statuses, cap metrics and periods, conversion kinds): each marked
for the catalogues here and translated on display by `word()`; an unknown value is shown unchanged."""

from __future__ import annotations

from portal.i18n import N_, gettext_

WORDS = {
    # statuses of offers, partners in a programme, links, invitations, statements, payout batches, conversions
    "active": N_("active"),
    "paused": N_("paused"),
    "archived": N_("archived"),
    "applied": N_("applied"),
    "approved": N_("approved"),
    "suspended": N_("suspended"),
    "rejected": N_("rejected"),
    "pending": N_("pending"),
    "accepted": N_("accepted"),
    "withdrawn": N_("withdrawn"),
    "expired": N_("expired"),
    "open": N_("open"),
    "closed": N_("closed"),
    "paid": N_("paid"),
    "cancelled": N_("cancelled"),
    "held": N_("held"),
    "reversed": N_("reversed"),
    "refused": N_("refused"),
    "requested": N_("requested"),
    "revoked": N_("revoked"),
    "duplicate": N_("duplicate"),
    "disabled": N_("disabled"),
    "delivered": N_("delivered"),
    "failed": N_("failed"),
    "deleted": N_("deleted"),
    # cap metrics and periods
    "clicks": N_("clicks"),
    "conversions": N_("conversions"),
    "payout": N_("payout"),
    "daily": N_("daily"),
    "lifetime": N_("lifetime"),
    # conversion kinds
    "purchase": N_("purchase"),
    "action": N_("action"),
    "refund": N_("refund"),
    "click": N_("click"),
}


def word(value: object) -> str:
    """A stored word in the page's language: "paused" -> "pausiert" (de); anything else as it is."""
    text = "" if value is None else str(value)
    return gettext_(WORDS[text]) if text in WORDS else text
