"""Signed click ids: round trips, tampering, time limits, key rotation and link binding."""

from __future__ import annotations

import base64
import os
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tracker.clickids import (
    REASONS,
    TOKEN_LENGTH,
    ClickId,
    ClickIdError,
    ClickIdSigner,
    derive_key,
)

SECRET = "0123456789abcdef0123456789abcdef-test-secret"
KEY0 = derive_key(SECRET, 0)
KEY1 = derive_key(SECRET, 1)
NOW = 1_700_000_000
DAY = 86_400
SIGNER = ClickIdSigner({0: KEY0, 1: KEY1}, current_key_id=1)
TOKEN = SIGNER.issue(4242, NOW)
RAW = base64.urlsafe_b64decode(TOKEN + "==")
REFUSALS = {"malformed", "unknown_key", "bad_signature"}
# A token with both "-" and "_", so its standard-alphabet spelling differs.
TOKEN_STD = next(t for t in iter(lambda: SIGNER.issue(4242, NOW), "") if "-" in t and "_" in t).translate(
    str.maketrans("-_", "+/")
)


def _encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _reason(token: object, signer: ClickIdSigner = SIGNER, **kwargs: object) -> str:
    with pytest.raises(ClickIdError) as info:
        signer.verify(token, NOW, DAY, **kwargs)  # type: ignore[arg-type]
    assert info.value.reason in REASONS
    return info.value.reason


@pytest.mark.parametrize(
    ("link_id", "issued_at"),
    [(1, NOW), (4242, NOW), (2**32 - 1, NOW), (7, 0), (7, 2**32 - 1), (123_456_789, 1)],
)
def test_round_trip(link_id: int, issued_at: int) -> None:
    token = SIGNER.issue(link_id, issued_at)
    assert len(token) == TOKEN_LENGTH
    assert re.fullmatch(r"[A-Za-z0-9_-]{38}", token)
    assert SIGNER.verify(token, issued_at, DAY) == ClickId(token, 1, 1, link_id, issued_at)


def test_tokens_are_unique() -> None:
    assert len({SIGNER.issue(1, NOW) for _ in range(2000)}) == 2000


@pytest.mark.parametrize(("link_id", "now"), [(0, NOW), (-1, NOW), (2**32, NOW), (1, -1), (1, 2**32)])
def test_issue_refuses_out_of_range(link_id: int, now: int) -> None:
    with pytest.raises(ValueError):
        SIGNER.issue(link_id, now)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (os.urandom(28), None),  # anything at all: refused, whatever the reason
        (b"\x00" * 28, "malformed"),  # version 0
        (b"\x02\x01" + os.urandom(26), "malformed"),  # version 2
        (b"\x01\x07" + os.urandom(26), "unknown_key"),
        (b"\x01\x01" + os.urandom(26), "bad_signature"),
        (RAW[:18] + os.urandom(10), "bad_signature"),  # a real body with a made-up MAC
        (RAW[:18] + bytes(10), "bad_signature"),
        (RAW[:18] + bytes(a ^ 0xFF for a in RAW[18:]), "bad_signature"),
    ],
)
def test_forged(raw: bytes, reason: str | None) -> None:
    got = _reason(_encode(raw))
    assert got in REFUSALS if reason is None else got == reason


@pytest.mark.parametrize("bit", range(len(RAW) * 8))
def test_every_bit_flipped_in_the_bytes_is_refused(bit: int) -> None:
    raw = bytearray(RAW)
    raw[bit // 8] ^= 1 << (bit % 8)
    expected = "bad_signature"
    if bit // 8 == 0:
        expected = "malformed"
    elif bit // 8 == 1:
        expected = "bad_signature" if raw[1] == 0 else "unknown_key"
    assert _reason(_encode(bytes(raw))) == expected


@pytest.mark.parametrize("bit", range(TOKEN_LENGTH * 8))
def test_every_bit_flipped_in_the_text_is_refused(bit: int) -> None:
    chars = bytearray(TOKEN.encode("ascii"))
    chars[bit // 8] ^= 1 << (bit % 8)
    assert _reason(chars.decode("latin-1")) in REFUSALS


@pytest.mark.parametrize(
    "token",
    [
        "",
        TOKEN[:-1],
        TOKEN[:37],
        TOKEN[:20],
        TOKEN + "A",
        TOKEN + "==",
        "A" + TOKEN,
        " " + TOKEN,
        TOKEN + "\n",
        TOKEN * 2,
        TOKEN[:-1] + "=",
        TOKEN[:10] + "+" + TOKEN[11:],
        TOKEN[:10] + "/" + TOKEN[11:],
        TOKEN[:10] + "." + TOKEN[11:],
        TOKEN[:10] + " " + TOKEN[11:],
        TOKEN[:10] + "é" + TOKEN[11:],
        TOKEN[:10] + "\x00" + TOKEN[11:],
        TOKEN_STD,  # the same bytes in the standard base64 alphabet
        TOKEN_STD + "==",
    ],
)
def test_wrong_shape_is_malformed(token: str) -> None:
    assert _reason(token) == "malformed"


@pytest.mark.parametrize("last", "BCDPRSfhvxyz9_-")
def test_non_canonical_last_character_is_malformed(last: str) -> None:
    # 28 bytes leave 4 unused bits in the last character; decoders ignore them, we do not.
    assert _reason(TOKEN[:-1] + last) == "malformed"


@pytest.mark.parametrize("token", [None, b"x" * 38, 38, ["A"] * 38])
def test_not_a_string_is_malformed(token: object) -> None:
    assert _reason(token) == "malformed"


@pytest.mark.parametrize(
    ("now", "max_age", "skew", "reason"),
    [
        (NOW, 0, 0, None),
        (NOW + 3600, 3600, 300, None),  # exactly max_age old: still valid
        (NOW + 3601, 3600, 300, "expired"),
        (NOW + 30 * DAY, 30 * DAY, 300, None),
        (NOW + 30 * DAY + 1, 30 * DAY, 300, "expired"),
        (NOW + 1, 0, 0, "expired"),
        (NOW - 300, 3600, 300, None),  # exactly skew ahead: still valid
        (NOW - 301, 3600, 300, "from_future"),
        (NOW - 1, 3600, 0, "from_future"),
        (NOW - DAY, 3600, 300, "from_future"),
        (0, 3600, 300, "from_future"),
    ],
)
def test_time_limits(now: int, max_age: int, skew: int, reason: str | None) -> None:
    if reason is None:
        assert SIGNER.verify(TOKEN, now, max_age, skew).issued_at == NOW
    else:
        with pytest.raises(ClickIdError) as info:
            SIGNER.verify(TOKEN, now, max_age, skew)
        assert info.value.reason == reason


def test_key_rotation() -> None:
    before = ClickIdSigner({0: KEY0}, current_key_id=0)
    after = ClickIdSigner({0: KEY0, 1: KEY1}, current_key_id=1)
    retired = ClickIdSigner({1: KEY1}, current_key_id=1)
    old, new = before.issue(5, NOW), after.issue(5, NOW)
    assert after.verify(old, NOW, DAY).key_id == 0
    assert after.verify(new, NOW, DAY).key_id == 1
    assert retired.verify(new, NOW, DAY).link_id == 5
    assert _reason(old, retired) == "unknown_key"
    assert _reason(new, before) == "unknown_key"
    # Same key id, other key (another deployment's secret): the signature fails.
    stranger = ClickIdSigner({1: derive_key("another secret of enough length!!", 1)}, current_key_id=1)
    assert _reason(new, stranger) == "bad_signature"


@pytest.mark.parametrize(
    ("link_ids", "ok"),
    [
        (None, True),
        ({4242}, True),
        (frozenset({1, 4242, 9}), True),
        (range(4000, 5000), True),
        ([4242], True),
        ({4243}, False),
        (frozenset(), False),
        (range(1, 4242), False),
    ],
)
def test_link_binding(link_ids: object, ok: bool) -> None:
    if ok:
        assert SIGNER.verify(TOKEN, NOW, DAY, link_ids=link_ids).link_id == 4242  # type: ignore[arg-type]
    else:
        assert _reason(TOKEN, link_ids=link_ids) == "wrong_link"


def test_signature_is_checked_before_time_and_link() -> None:
    forged = _encode(RAW[:18] + bytes(10))
    with pytest.raises(ClickIdError) as info:
        SIGNER.verify(forged, NOW + 365 * DAY, 1, link_ids=set())
    assert info.value.reason == "bad_signature"


def test_error_is_a_value_error() -> None:
    error = ClickIdError("expired", "too old")
    assert isinstance(error, ValueError)
    assert (error.reason, error.detail, str(error)) == ("expired", "too old", "expired: too old")


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ((SECRET, 0), (SECRET, 0), True),
        ((SECRET, 0), (SECRET.encode(), 0), True),
        ((SECRET, 0), (SECRET, 1), False),
        ((SECRET, 255), (SECRET, 254), False),
        ((SECRET, 0), (SECRET + "x", 0), False),
    ],
)
def test_derive_key(a: tuple[str | bytes, int], b: tuple[str | bytes, int], same: bool) -> None:
    assert len(derive_key(*a)) == 32
    assert (derive_key(*a) == derive_key(*b)) is same


@pytest.mark.parametrize(("secret", "key_id"), [(SECRET, -1), (SECRET, 256), ("", 0), (b"", 0)])
def test_derive_key_refuses(secret: str | bytes, key_id: int) -> None:
    with pytest.raises(ValueError):
        derive_key(secret, key_id)


@pytest.mark.parametrize(
    ("keys", "current"),
    [({0: KEY0}, 1), ({}, 0), ({256: KEY0}, 256), ({-1: KEY0}, -1), ({0: b"short"}, 0), ({0: KEY0}, 300)],
)
def test_signer_refuses_bad_keys(keys: dict[int, bytes], current: int) -> None:
    with pytest.raises(ValueError):
        ClickIdSigner(keys, current)


@settings(max_examples=500, database=None)
@given(st.text())
def test_random_text_never_verifies(token: str) -> None:
    assert _reason(token) in REFUSALS


@settings(max_examples=500, database=None)
@given(st.from_regex(r"[A-Za-z0-9_-]{37}[AQgw]", fullmatch=True))
def test_random_well_formed_tokens_never_verify(token: str) -> None:
    assert _reason(token) in REFUSALS


@settings(max_examples=500, database=None)
@given(st.binary(min_size=26, max_size=26))
def test_random_bodies_with_a_known_key_never_verify(rest: bytes) -> None:
    assert _reason(_encode(b"\x01\x01" + rest)) == "bad_signature"
