"""Log lines: JSON with the fields a collector needs, text as before, and no IP address in either."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import orjson
import pytest

from kernel import logs
from kernel.env import Env, SettingsError


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("client 203.0.113.77 refused", "client <ip> refused"),
        ("from 198.51.100.201:5000", "from <ip>:5000"),
        ("v6 2001:db8:1234:5678:9abc:def0:1234:5678 here", "v6 <ip> here"),
        ("short 2001:db8::1, loopback ::1", "short <ip>, loopback <ip>"),
        ("mapped ::ffff:192.0.2.1.", "mapped <ip>."),
        ("prefix 203.0.113.0/24", "prefix <ip>/24"),
        ("[fe80::1]:8000", "[<ip>]:8000"),
        # Look-alikes that are not addresses stay as they are.
        ("at 12:30:45 on 2026-05-09", "at 12:30:45 on 2026-05-09"),
        ("version 1.2.3 and 999.1.1.1", "version 1.2.3 and 999.1.1.1"),
        ("end of sentence 192.0.2.33.", "end of sentence <ip>."),
        ("1.2.3.4.5 is an OID", "1.2.3.4.5 is an OID"),
        ("Class::method and a:b:c", "Class::method and a:b:c"),
        ("nothing here", "nothing here"),
    ],
)
def test_mask_ips(text: str, masked: str) -> None:
    assert logs.mask_ips(text) == masked


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, given back as it was: handlers and level."""
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    yield logger
    for handler in list(logger.handlers):
        if handler not in handlers:
            logger.removeHandler(handler)
    logger.setLevel(level)


def test_json_lines_carry_fields_and_mask_addresses(root: logging.Logger) -> None:
    stream = io.StringIO()
    assert logs.setup(Env({"CLICKMINT_LOG_FORMAT": "json"}), stream) == "json"
    log = logging.getLogger("clickmint.test")
    log.info("visitor %s from %s", "v1", "203.0.113.77")
    log.warning("with id", extra={"request_id": "req-42"})
    token = logs.REQUEST_ID.set("req-ctx")
    try:
        try:
            raise ValueError("bad peer 2001:db8::7")
        except ValueError:
            log.exception("failed")
    finally:
        logs.REQUEST_ID.reset(token)
    lines = [orjson.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 3
    first, second, third = lines
    assert first["message"] == "visitor v1 from <ip>"
    assert (first["level"], first["logger"]) == ("info", "clickmint.test")
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert "request_id" not in first
    assert second["request_id"] == "req-42"
    assert third["request_id"] == "req-ctx" and "ValueError" in third["exc"]
    assert "2001:db8::7" not in stream.getvalue() and "203.0.113.77" not in stream.getvalue()


def test_text_lines_mask_too_and_setup_twice_keeps_one_handler(root: logging.Logger) -> None:
    stream = io.StringIO()
    logs.setup(Env({}), stream)
    logs.setup(Env({"CLICKMINT_LOG_FORMAT": "text"}), stream)
    assert sum(1 for h in root.handlers if h.get_name() == "clickmint") == 1
    logging.getLogger("clickmint.test").warning("peer %s", "198.51.100.9")
    out = stream.getvalue()
    assert out.count("\n") == 1
    assert "WARNING clickmint.test peer <ip>" in out and "198.51.100.9" not in out


def test_unknown_format_is_refused() -> None:
    with pytest.raises(SettingsError, match="CLICKMINT_LOG_FORMAT"):
        logs.setup(Env({"CLICKMINT_LOG_FORMAT": "xml"}))
