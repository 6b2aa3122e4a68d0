"""Billing's public interface. Payout files (billing/payout_files.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import payout_files as _impl

__all__ = ["SEPA_SCHEMAS"]

SEPA_SCHEMAS = _impl.SEPA_SCHEMAS
"""The SEPA pain.001 versions a batch file can be written in."""
