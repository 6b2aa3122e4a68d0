"""Signed click ids: issued by the tracker, verified by tracker and billing without any lookup."""

from __future__ import annotations

import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Container, Mapping
from dataclasses import dataclass
from typing import Final, Literal

# Layout of the 28 decoded bytes, all integers big-endian:
#   version (1) | key id (1) | link id (uint32) | issued_at (uint32 unix s) | random (8) | HMAC-SHA256[:10]
# 28 bytes are 38 base64url characters without padding.
VERSION: Final = 1
TOKEN_LENGTH: Final = 38
MIN_KEY_LENGTH: Final = 16
MAX_LINK_ID: Final = 2**32 - 1
_HEADER: Final = struct.Struct(">BBII")
_BODY_LENGTH: Final = _HEADER.size + 8
_MAC_LENGTH: Final = 10
# The last character holds 2 data bits and 4 padding bits; requiring the padding bits to be zero (A, Q, g, w)
# makes the encoding canonical, so one click id has exactly one spelling.
_WELL_FORMED: Final = re.compile(r"[A-Za-z0-9_-]{37}[AQgw]").fullmatch
_FROM_URLSAFE: Final = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_IPAD: Final = bytes(b ^ 0x36 for b in range(256))
_OPAD: Final = bytes(b ^ 0x5C for b in range(256))
_HKDF_SALT: Final = b"clickmint click-id key derivation"
_BLOCK: Final = 64  # SHA-256's block size, for HMAC's padded key


_pool = b""
_at = 0


def _forget_pool() -> None:
    # A forked child must never reuse its parent's random bytes: two workers would issue equal click ids.
    global _pool, _at
    _pool, _at = b"", 0


os.register_at_fork(after_in_child=_forget_pool)


def _random8() -> bytes:
    # One getrandom() call per 512 click ids instead of one per click.
    global _pool, _at
    if _at + 8 > len(_pool):
        _pool, _at = os.urandom(4096), 0
    _at += 8
    return _pool[_at - 8 : _at]


Reason = Literal["malformed", "unknown_key", "bad_signature", "expired", "from_future", "wrong_link"]
REASONS: Final[tuple[Reason, ...]] = (
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired",
    "from_future",
    "wrong_link",
)


class ClickIdError(ValueError):
    """A click id was refused; `reason` is one of REASONS, machine-readable."""

    def __init__(self, reason: Reason, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason: Reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ClickId:
    """A verified click id and what it carries."""

    token: str
    version: int
    key_id: int
    link_id: int
    issued_at: int  # unix seconds


def derive_key(secret: str | bytes, key_id: int) -> bytes:
    """Derive the 32-byte signing key of `key_id` from the service secret (HKDF-SHA256, RFC 5869).

    Rotating is adding a key id: derive_key(secret, 1) is unrelated to derive_key(secret, 0), so the
    same service secret can back every key id while only the current one issues new click ids.
    """
    if not 0 <= key_id <= 255:
        raise ValueError(f"key id {key_id} is out of range 0..255")
    material = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if not material:
        raise ValueError("the secret is empty")
    prk = hmac.digest(_HKDF_SALT, material, "sha256")
    info = b"clickmint/click-id/v1/key/" + bytes((key_id,))
    return hmac.digest(prk, info + b"\x01", "sha256")


class ClickIdSigner:
    """Issues click ids with the current key and verifies them with any key it holds."""

    __slots__ = ("_current_key_id", "_inner", "_macs", "_outer")

    def __init__(self, keys: Mapping[int, bytes], current_key_id: int) -> None:
        macs: list[hmac.HMAC | None] = [None] * 256
        for key_id, key in keys.items():
            if not 0 <= key_id <= 255:
                raise ValueError(f"key id {key_id} is out of range 0..255")
            if len(key) < MIN_KEY_LENGTH:
                raise ValueError(f"key {key_id} is shorter than {MIN_KEY_LENGTH} bytes")
            # Keyed once here; each use copies the keyed state instead of re-hashing the key.
            macs[key_id] = hmac.new(bytes(key), digestmod=hashlib.sha256)
        issuer = macs[current_key_id] if 0 <= current_key_id <= 255 else None
        if issuer is None:
            raise ValueError(f"current key id {current_key_id} has no key")
        self._macs = macs
        # HMAC's two keyed SHA-256 states (RFC 2104), copied per click id: half the cost of copying an HMAC object.
        key = bytes(keys[current_key_id])
        block = (hashlib.sha256(key).digest() if len(key) > _BLOCK else key).ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))
        self._current_key_id = current_key_id

    @property
    def current_key_id(self) -> int:
        """The key id new click ids are signed with."""
        return self._current_key_id

    def issue(self, link_id: int, now: int) -> str:
        """Return a new click id for `link_id` (1..2**32-1) issued at `now` (unix seconds)."""
        if not 1 <= link_id <= MAX_LINK_ID:
            raise ValueError(f"link id {link_id} is out of range 1..{MAX_LINK_ID}")
        if not 0 <= now <= MAX_LINK_ID:
            raise ValueError(f"time {now} does not fit in 32 bits")
        body = _HEADER.pack(VERSION, self._current_key_id, link_id, now) + _random8()
        inner = self._inner.copy()
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        token = binascii.b2a_base64(body + outer.digest()[:_MAC_LENGTH], newline=False)
        return token.translate(_TO_URLSAFE).rstrip(b"=").decode("ascii")

    def verify(
        self,
        token: str,
        now: int,
        max_age_s: int,
        skew_s: int = 300,
        *,
        link_ids: Container[int] | None = None,
    ) -> ClickId:
        """Return the click id `token` carries, or raise ClickIdError with the reason it is refused.

        The signature is checked before the time and the link, so an unsigned token only ever learns
        "malformed", "unknown_key" or "bad_signature". It is expired when now - issued_at > max_age_s
        and from the future when issued_at - now > skew_s. With `link_ids`, a click id of any other
        link is refused as "wrong_link" (a click id replayed on another offer's conversion).
        """
        if type(token) is not str or len(token) != TOKEN_LENGTH or _WELL_FORMED(token) is None:
            raise ClickIdError("malformed", "not a 38-character base64url click id")
        raw = binascii.a2b_base64(token.encode("ascii").translate(_FROM_URLSAFE) + b"==")
        version, key_id, link_id, issued_at = _HEADER.unpack_from(raw)
        if version != VERSION:
            raise ClickIdError("malformed", f"unknown version {version}")
        base = self._macs[key_id]
        if base is None:
            raise ClickIdError("unknown_key", f"no key with id {key_id}")
        mac = base.copy()
        mac.update(raw[:_BODY_LENGTH])
        if not hmac.compare_digest(mac.digest()[:_MAC_LENGTH], raw[_BODY_LENGTH:]):
            raise ClickIdError("bad_signature", "the signature does not match")
        if issued_at - now > skew_s:
            raise ClickIdError("from_future", f"issued {issued_at - now}s in the future")
        if now - issued_at > max_age_s:
            raise ClickIdError("expired", f"issued {now - issued_at}s ago, older than {max_age_s}s")
        if link_ids is not None and link_id not in link_ids:
            raise ClickIdError("wrong_link", f"issued for link {link_id}")
        return ClickId(token, version, key_id, link_id, issued_at)
