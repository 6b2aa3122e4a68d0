"""Billing's public interface. Money figures from the records statements are made of (billing/figures.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import figures as _impl

__all__ = ["Figures", "Result", "Scope", "commission", "conversions"]

Scope = _impl.Scope
"""Whose money: one partner, one merchant's programme, or every merchant."""

Figures = _impl.Figures
"""One key's money in one currency, minor units."""

Result = _impl.Result
"""Figures by (key, currency)."""

commission = _impl.commission
"""Every bucket of money of a scope between two UTC days (both included), per key of a group."""

conversions = _impl.conversions
"""Per conversion, per currency: what it earned (or its pending or rejected amount)."""
