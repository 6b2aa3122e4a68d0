"""Fixed-window rate limits kept in Redis, so every portal process shares them; over the limit is a 429."""

from __future__ import annotations

import redis.asyncio

from kernel import keys
from portal.errors import ApiError

# INCR the window's counter, start its expiry on the first hit; answer (count, seconds left).
_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
return {n, ttl}
"""


class RateLimiter:
    def __init__(self, client: redis.asyncio.Redis, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_SCRIPT)

    async def hit(self, bucket: str, key: str, limit: int, window_s: int = 60) -> None:
        """Count one hit; raise 429 rate_limited with Retry-After once `limit` is passed in the window."""
        count, ttl = await self._script(keys=[keys.rate_key(self._prefix, bucket, key)], args=[window_s])
        if int(count) > limit:
            wait = max(int(ttl), 1)
            raise ApiError(429, "rate_limited", f"too many requests; retry in {wait} s", retry_after=wait)

    async def reset(self, bucket: str, key: str) -> None:
        await self._client.delete(keys.rate_key(self._prefix, bucket, key))
