"""Billing's public interface. Review of held conversions (billing/review.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import review as _impl

__all__ = ["ReviewError", "decide"]

ReviewError = _impl.ReviewError
"""`code`: not_found (no such held conversion in scope) or not_held (decided already)."""

decide = _impl.decide
"""Approve or reject one held conversion (audited); returns its new state."""
