"""A minimal HTTP/1.1 responder for an admin address: GET /metrics (Prometheus text), one request per connection.

Used by the tracker for CLICKMINT_METRICS_HOST:CLICKMINT_METRICS_PORT (loopback by default), never on the
click port. Every worker process of one tracker listens on the same port (SO_REUSEPORT), so a scrape is
answered by one of them, with its own counters. Billing ingest serves its metrics through it too (one
process per port, so without SO_REUSEPORT: a second ingest on a taken port fails instead of sharing it),
with a render that awaits Redis and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("clickmint.scrape")
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"
READ_TIMEOUT_S = 5.0
MAX_REQUEST = 16 * 1024


async def serve(
    render: Callable[[], str | Awaitable[str]],
    host: str,
    port: int,
    *,
    paths: tuple[bytes, ...] = (b"/metrics",),
    reuse_port: bool = True,
) -> asyncio.Server:
    """Listen on host:port (0: a free port) and answer GET on `paths` with `render()` (awaited if a coroutine)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                request = await reader.readuntil(b"\r\n\r\n")
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body, kind = b"405 Method Not Allowed", b"method not allowed\n", b"text/plain"
            elif path not in paths:
                status, body, kind = b"404 Not Found", b"not found\n", b"text/plain"
            else:
                text = render()
                if not isinstance(text, str):
                    text = await text
                status, body, kind = b"200 OK", text.encode(), CONTENT_TYPE
            head = b"HTTP/1.1 %s\r\ncontent-type: %s\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % (
                status,
                kind,
                len(body),
            )
            writer.write(head if method == b"HEAD" else head + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:  # a scrape must never take the service down
            log.exception("failed to answer a metrics scrape")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, reuse_port=reuse_port, limit=MAX_REQUEST)
