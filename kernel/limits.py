"""Request header limits for the tracker and the portal: too many or too large headers answer 431.

uvicorn's httptools parser takes any number of headers of any size, so the check is made on the ASGI scope,
before any handler runs: at most MAX_HEADERS headers and MAX_HEADER_BYTES of names and values together
(browsers send ~10 headers and a few KB; nginx's default is 4 x 8 KB).
"""

from __future__ import annotations

from starlette.types import Send

MAX_HEADERS = 100
MAX_HEADER_BYTES = 32 * 1024
_BODY = b'{"error": "headers_too_large", "detail": "at most 100 request headers and 32 KiB of them"}'
_START = {
    "type": "http.response.start",
    "status": 431,
    "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_BODY)).encode()),
        (b"connection", b"close"),
    ],
}


def too_large(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether a request's headers pass the limits (the tracker calls this on every request: kept small)."""
    if len(headers) > MAX_HEADERS:
        return True
    size = 0
    for name, value in headers:
        size += len(name) + len(value)
    return size > MAX_HEADER_BYTES


async def refuse(send: Send) -> None:
    """Answer 431 Request Header Fields Too Large."""
    await send(_START)
    await send({"type": "http.response.body", "body": _BODY})
