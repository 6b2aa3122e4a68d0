"""The baseline: a bare pure-ASGI app that answers every request with a 302, nothing else.

It is what uvicorn itself can do on one core; the tracker is measured against it in the same run.
The headers mirror the tracker's redirect (Location, no-store, content-length) minus the cookie.
"""

from __future__ import annotations

from typing import Any

_LOCATION = (b"location", b"https://shop.example.com/landing?cid=baseline&s1=x")
_NO_STORE = (b"cache-control", b"no-store, max-age=0")
_EMPTY = (b"content-length", b"0")


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answer HTTP with the 302; accept the lifespan protocol so uvicorn starts it like the tracker."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 302, "headers": [_LOCATION, _NO_STORE, _EMPTY]})
    await send({"type": "http.response.body", "body": b""})
