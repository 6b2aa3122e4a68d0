"""Billing's public interface. Payout batches: export, load, mark paid, cancel (billing/payouts.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import payouts as _impl

__all__ = ["FORMATS", "Actor", "PayoutError", "batches", "cancel", "export", "load", "mark_paid", "sealed_where"]

FORMATS = _impl.FORMATS
"""The payout file formats a batch can be made in."""

Actor = _impl.Actor
"""Who acts, for the audit log: a portal user, or the command line (no user id)."""

PayoutError = _impl.PayoutError
"""A batch that cannot be made, found or changed; `code` is machine-readable."""

sealed_where = _impl.sealed_where
"""The associated data a payout detail is sealed with: it opens only on its own row."""

export = _impl.export
"""Make (and record) the batch of a month's payable statements, in one transaction."""

load = _impl.load
"""A recorded batch and its file (checked against its SHA-256)."""

batches = _impl.batches
"""Recorded batches, newest first (a merchant's, or every merchant's)."""

mark_paid = _impl.mark_paid
"""Every statement of the batch paid and the batch closed, in one transaction."""

cancel = _impl.cancel
"""Give up an open batch (the file was never sent): its statements may go into another."""
