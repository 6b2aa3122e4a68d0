"""Billing's public interface. The loyalty ledger (billing/loyalty_ledger.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import loyalty_ledger as _impl

__all__ = ["adjust", "enroll", "liability", "load_programmes", "member_summary", "programme_of"]

load_programmes = _impl.load_programmes
"""The loyalty programmes by merchant id (enabled ones only unless told)."""

programme_of = _impl.programme_of
"""One merchant's loyalty programme."""

enroll = _impl.enroll
"""Enrol a customer as a member of a merchant's programme."""

adjust = _impl.adjust
"""A manual points adjustment with its reason, audited; returns the new balance."""

member_summary = _impl.member_summary
"""What a member sees: balance, its value, pending points, tier and progress."""

liability = _impl.liability
"""Outstanding points and their value by month of expiry, and points still pending."""
