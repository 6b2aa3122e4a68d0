"""Logging set-up of the `clickmint` processes: JSON or text lines, with IP addresses masked.

`CLICKMINT_LOG_FORMAT=json` writes one orjson object per line: time (UTC, ISO 8601), level,
logger, message, request_id (from `extra={"request_id": ...}` or the `REQUEST_ID` context
variable) when there is one, and exc for a traceback. `text` (the default) keeps the classic
line. In both, anything in a message or traceback that parses as an IPv4 or IPv6 address is
replaced by `<ip>`: a full client address must never reach a log (README, Privacy).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import ipaddress
import logging
import re
import sys
from typing import Any, TextIO

import orjson

from kernel.env import Env

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
MASK = "<ip>"
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("clickmint_request_id", default=None)

# Candidates only; each is confirmed by `ipaddress`, so versions like 1.2.3 or times like 12:30:45 stay.
_IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?!\w|\.\d)"
_IPV6 = r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?![\w:]|\.\d)"
_CANDIDATE = re.compile(f"{_IPV6}|{_IPV4}")


def _replace(match: re.Match[str]) -> str:
    text = match.group(0)
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return text
    return MASK


def mask_ips(text: str) -> str:
    """`text` with every IPv4 and IPv6 address in it replaced by `<ip>`."""
    if "." not in text and ":" not in text:
        return text
    return _CANDIDATE.sub(_replace, text)


class MaskIPs(logging.Filter):
    """Masks addresses in the formatted message; the record then carries the masked text and no args."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_ips(message)
        if masked != message or record.args:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": mask_ips(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or REQUEST_ID.get()
        if request_id:
            entry["request_id"] = str(request_id)
        if record.exc_info:
            entry["exc"] = mask_ips(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = mask_ips(record.exc_text)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """The classic line, with addresses in tracebacks masked too."""

    def formatException(self, ei: Any) -> str:
        return mask_ips(super().formatException(ei))


def handler(kind: str, stream: TextIO | None = None) -> logging.Handler:
    """A stream handler writing `kind` ("json" or "text") lines, with addresses masked."""
    made = logging.StreamHandler(stream or sys.stderr)
    made.setFormatter(JsonFormatter() if kind == "json" else TextFormatter(TEXT_FORMAT))
    made.addFilter(MaskIPs())
    made.set_name("clickmint")
    return made


def setup(env: Env | None = None, stream: TextIO | None = None) -> str:
    """Configure the root logger from CLICKMINT_LOG_FORMAT (json|text); safe to call again. Returns the format."""
    env = env or Env()
    kind = env.choice("LOG_FORMAT", "text", FORMATS)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "clickmint"]:
        root.removeHandler(old)
    root.addHandler(handler(kind, stream))
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    return kind
