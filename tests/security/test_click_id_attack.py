"""A million forged, bit-flipped, truncated and expired click ids: none accepted, and what each costs."""

from __future__ import annotations

import base64
import os
import random
import time

from tracker.app import signer_for
from tracker.clickids import ClickIdError

ATTEMPTS = 1_000_000
NOW = 1_800_000_000
WINDOW = 30 * 86400


def test_no_forged_or_altered_click_id_is_accepted() -> None:
    signer = signer_for("s" * 40)
    genuine = [signer.issue(link, NOW - 60) for link in range(1, 1001)]
    rng = random.Random(1124)
    candidates: list[str] = []
    quarter = ATTEMPTS // 4
    for _ in range(quarter):  # random well-formed tokens: right length, right alphabet
        candidates.append(base64.urlsafe_b64encode(os.urandom(28)).decode().rstrip("="))
    for i in range(quarter):  # one bit flipped in a genuine token
        raw = bytearray(base64.urlsafe_b64decode(genuine[i % 1000] + "=="))
        raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        candidates.append(base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("="))
    for i in range(quarter):  # truncated or extended
        token = genuine[i % 1000]
        candidates.append(token[: rng.randrange(1, 38)] if i % 2 else token + "A")
    expired = [signer.issue(link, NOW - WINDOW - 1) for link in range(1, 1001)]
    candidates.extend(expired[i % 1000] for i in range(ATTEMPTS - 3 * quarter))  # genuine but past the window

    accepted = 0
    reasons: dict[str, int] = {}
    started = time.perf_counter()
    for token in candidates:
        try:
            signer.verify(token, NOW, WINDOW)
            accepted += 1
        except ClickIdError as exc:
            reasons[exc.reason] = reasons.get(exc.reason, 0) + 1
    per_id_us = (time.perf_counter() - started) / len(candidates) * 1e6
    assert accepted == 0
    assert reasons.get("expired") == ATTEMPTS - 3 * quarter
    assert set(reasons) <= {"malformed", "unknown_key", "bad_signature", "expired"}
    for token in genuine:  # and the genuine ones still verify
        signer.verify(token, NOW, WINDOW)
    print(f"\n{len(candidates):,} hostile click ids, 0 accepted, {per_id_us:.2f} µs each; refusals: {reasons}")
