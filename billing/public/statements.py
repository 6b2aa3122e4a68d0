"""Billing's public interface. Statements: close, mark paid, export and read one statement (billing/statements.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import statements as _impl

__all__ = ["StatementError", "close", "detail", "document", "export", "mark_paid", "month_bounds"]

StatementError = _impl.StatementError
"""A statement operation that cannot be done (unknown statement, wrong state)."""

month_bounds = _impl.month_bounds
"""'2026-11' -> (2026-11-01, 2026-12-01); ValueError for anything else."""

close = _impl.close
"""Fix the statement's totals and export hashes; the database refuses any later change."""

mark_paid = _impl.mark_paid
"""Mark a closed statement paid."""

export = _impl.export
"""The statement as CSV or PDF bytes (a closed statement's first export pins its SHA-256)."""

document = _impl.document
"""The statement as the exports render it."""

detail = _impl.detail
"""The events each line of a statement pays or takes back, as CSV bytes."""
