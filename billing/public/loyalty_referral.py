"""Billing's public interface. Loyalty referrals (billing/loyalty_referral.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import loyalty_referral as _impl

__all__ = ["link"]

link = _impl.link
"""The member's referral code (made once): a partner and a link of its own on the referral offer."""
