"""The requests every load generator sends: browser-like clicks, one distinct visitor address per request.

Both generators (wrk and the Python one) build request i as PREFIX + visitor_ip(i) + SUFFIX, so the
baseline and the tracker, and wrk and the fallback, see byte-for-byte the same traffic. The visitor
rotates through X-Forwarded-For (the tracker runs with CLICKMINT_TRUST_FORWARDED=true): each visitor
is hashed, burst-counted and SET NX'ed as in production, instead of one address hammering one key.
"""

from __future__ import annotations

from dataclasses import dataclass

# A current desktop Chrome: classified as a human by tracker/bots.py.
BROWSER_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
DEFAULT_VISITORS = 1 << 20  # distinct visitor addresses before one comes back


@dataclass(frozen=True)
class Traffic:
    """What to request and from how many visitors; the same object drives every generator."""

    host: str
    port: int
    path: str  # e.g. /c/<code>?sub1=x
    visitors: int = DEFAULT_VISITORS

    @property
    def prefix(self) -> str:
        """The request up to the visitor address (header order as Chrome sends it)."""
        return (
            f"GET {self.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            "Connection: keep-alive\r\n"
            f"User-Agent: {BROWSER_UA}\r\n"
            "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n"
            "Referer: https://deals.example.net/spring-sale\r\n"
            "Accept-Encoding: gzip, deflate, br\r\n"
            "Accept-Language: en-US,en;q=0.9\r\n"
            "X-Forwarded-For: "
        )

    suffix = "\r\n\r\n"

    def visitor_ip(self, i: int) -> str:
        """The address of request i's visitor (10.0.0.0/8; wrk's Lua computes the same)."""
        k = i % self.visitors
        return f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"

    def request(self, i: int) -> bytes:
        return (self.prefix + self.visitor_ip(i) + self.suffix).encode("latin-1")

    def to_args(self) -> list[str]:
        """Command-line form for `python -m loadtests.loadgen`."""
        return ["--host", self.host, "--port", str(self.port), "--path", self.path, "--visitors", str(self.visitors)]
