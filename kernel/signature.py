"""The postback signature a merchant's server sends: HMAC-SHA256 over "<timestamp>.<body>" (pure)."""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """What a merchant sends as X-Clickmint-Signature (used by our docs, the portal's test conversion and tests)."""
    return "sha256=" + hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
