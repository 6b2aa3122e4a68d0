"""Secrets at rest (IBANs, VAT numbers, payout files): AES-256-GCM under a key derived from the secret key.

The key is HKDF-SHA256 of CLICKMINT_SECRET_KEY with its own label, so it is never the key that signs click ids
or sessions. Each value is sealed with associated data naming where it belongs (table, ids, field): a sealed
IBAN copied onto another partner's row does not open. Format: version byte 1, 12-byte nonce, ciphertext+tag.
Rotating the secret key makes stored values unreadable: see docs/payouts.md.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = b"\x01"
_LABEL = b"clickmint payout details v1"


class SealError(ValueError):
    """A sealed value that does not open: another key, another place, or altered bytes."""


class Sealer:
    """Seals and opens values with the key derived from `secret_key`."""

    def __init__(self, secret_key: str) -> None:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_LABEL).derive(secret_key.encode())
        self._aead = AESGCM(key)

    def seal(self, value: bytes, where: str) -> bytes:
        nonce = os.urandom(12)
        return _VERSION + nonce + self._aead.encrypt(nonce, value, where.encode())

    def open(self, sealed: bytes, where: str) -> bytes:
        if len(sealed) < 29 or sealed[:1] != _VERSION:
            raise SealError("not a sealed value")
        try:
            return self._aead.decrypt(sealed[1:13], sealed[13:], where.encode())
        except InvalidTag as exc:
            raise SealError(f"the sealed value for {where} does not open (another secret key, or altered)") from exc

    def seal_text(self, value: str, where: str) -> bytes:
        return self.seal(value.encode(), where)

    def open_text(self, sealed: bytes, where: str) -> str:
        return self.open(sealed, where).decode()


def mask(value: str, keep: int = 4) -> str:
    """Everything but the country prefix and the last `keep` characters hidden: 'DE89 •••• 3000'."""
    if len(value) <= keep + 2:
        return "•" * len(value)
    return f"{value[:2]}•••{value[-keep:]}"
