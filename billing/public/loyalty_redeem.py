"""Billing's public interface. Loyalty checkout: reserve, confirm, release (billing/loyalty_redeem.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import loyalty_redeem as _impl

__all__ = ["MAX_POINTS", "confirm", "release", "reserve"]

MAX_POINTS = _impl.MAX_POINTS
"""The most points one redemption may ask for."""

reserve = _impl.reserve
"""Reserve a member's points for an order (within the programme's limits)."""

confirm = _impl.confirm
"""The order was placed: the reserved points stay spent (idempotent)."""

release = _impl.release
"""The order was abandoned: the reserved points go back to their lots."""
