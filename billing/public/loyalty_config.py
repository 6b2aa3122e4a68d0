"""Billing's public interface. Loyalty programme settings (billing/loyalty_config.py).

The portal imports only billing.public.*; see docs/architecture.md."""

from billing import loyalty_config as _impl

__all__ = ["describe_row", "save_programme"]

save_programme = _impl.save_programme
"""Create or change a merchant's programme; fields not given keep their value."""

describe_row = _impl.describe_row
"""The programme's settings, with the referral settings, as the API shows them."""
