"""Billing's public interface. Statement documents: the spreadsheet-safe cell text (billing/statement_doc.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import statement_doc as _impl

__all__ = ["safe_cell"]

safe_cell = _impl.safe_cell
"""Text a spreadsheet shows as text: a leading apostrophe where it would start a formula."""
