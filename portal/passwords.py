"""Passwords (argon2id at OWASP's parameters), session ids, API keys and signed reset tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

# OWASP Password Storage Cheat Sheet: argon2id, m = 19 MiB, t = 2, p = 1.
HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)
# Verified against when the e-mail is unknown, so a login takes as long whether the user exists or not.
_DUMMY = HASHER.hash(secrets.token_urlsafe(16))
MIN_PASSWORD = 10
MAX_PASSWORD = 256
RESET_TTL_S = 3600


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> tuple[bool, bool]:
    """(matches, needs_rehash). A missing hash still costs one verification."""
    try:
        ok = HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False, False
    return ok, ok and HASHER.check_needs_rehash(stored or "")


def check_password_rules(password: str) -> str | None:
    if len(password) < MIN_PASSWORD:
        return f"a password has at least {MIN_PASSWORD} characters"
    if len(password) > MAX_PASSWORD:
        return f"a password has at most {MAX_PASSWORD} characters"
    return None


def new_token() -> str:
    """256 random bits, URL-safe: session ids and CSRF tokens."""
    return secrets.token_urlsafe(32)


def sha256(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def new_api_key() -> tuple[str, str, bytes]:
    """(shown-once key, its public prefix, the SHA-256 of its secret part)."""
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return f"cm_{prefix}_{secret}", prefix, sha256(secret)


def split_api_key(key: str) -> tuple[str, str] | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != "cm" or len(parts[1]) != 12 or not parts[2] or len(key) > 100:
        return None
    return parts[1], parts[2]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def reset_token(secret_key: str, user_id: int, password_hash: str | None, now: float | None = None) -> str:
    """A signed, expiring token; it dies when the password changes, so it works once."""
    expires = int((time.time() if now is None else now) + RESET_TTL_S)
    body = f"{user_id}.{expires}"
    return body + "." + _b64(_reset_mac(secret_key, body, password_hash))


def read_reset_token(token: str) -> tuple[int, int] | None:
    """(user id, expiry) from a token's readable part; its signature is checked by check_reset_token."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(token) > 200:
        return None
    return int(parts[0]), int(parts[1])


def check_reset_token(secret_key: str, token: str, password_hash: str | None, now: float | None = None) -> bool:
    read = read_reset_token(token)
    if read is None or read[1] < (time.time() if now is None else now):
        return False
    body, _, mac = token.rpartition(".")
    return hmac.compare_digest(mac, _b64(_reset_mac(secret_key, body, password_hash)))


def _reset_mac(secret_key: str, body: str, password_hash: str | None) -> bytes:
    key = hashlib.sha256(b"clickmint-password-reset\0" + secret_key.encode()).digest()
    return hmac.new(key, f"{body}.{password_hash or ''}".encode(), hashlib.sha256).digest()[:18]


def feed_token(secret_key: str, merchant_id: int, partner_id: int) -> str:
    """The unguessable id of a partner's public price feed for one merchant's store."""
    key = hashlib.sha256(b"clickmint-price-feed\0" + secret_key.encode()).digest()
    mac = hmac.new(key, f"{merchant_id}.{partner_id}".encode(), hashlib.sha256).digest()[:12]
    return f"{merchant_id}.{partner_id}.{_b64(mac)}"


def check_feed_token(secret_key: str, token: str) -> tuple[int, int] | None:
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit() or len(token) > 80:
        return None
    merchant_id, partner_id = int(parts[0]), int(parts[1])
    if not hmac.compare_digest(token, feed_token(secret_key, merchant_id, partner_id)):
        return None
    return merchant_id, partner_id
