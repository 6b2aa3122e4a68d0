"""Fixed-window rate limits kept in Redis, so every portal process shares them; over the limit is a 429.
While Redis cannot answer, requests that pass a limit are refused 503 redis_unavailable (with Retry-After).

One key per bucket and caller, so on a Redis Cluster each limit lives on the node of its key's slot."""

from __future__ import annotations

from redis.exceptions import RedisError

from kernel import keys
from kernel.redis.pyclient import Lazy
from portal.errors import ApiError

# INCR the window's counter, start its expiry on the first hit; answer (count, seconds left).
_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
return {n, ttl}
"""


class RateLimiter:
    def __init__(self, redis: Lazy, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def hit(self, bucket: str, key: str, limit: int, window_s: int = 60) -> None:
        """Count one hit; raise 429 rate_limited with Retry-After once `limit` is passed in the window."""
        try:
            count, ttl = await self._redis.script(_SCRIPT, [keys.rate_key(self._prefix, bucket, key)], [window_s])
        except (RedisError, OSError) as exc:  # closed, not open: no sign-in without its limit, never a 500
            raise ApiError(
                503, "redis_unavailable", "the rate limits cannot be checked right now; retry later", retry_after=5
            ) from exc
        if int(count) > limit:
            wait = max(int(ttl), 1)
            raise ApiError(429, "rate_limited", f"too many requests; retry in {wait} s", retry_after=wait)

    async def reset(self, bucket: str, key: str) -> None:
        await self._redis.delete(keys.rate_key(self._prefix, bucket, key))
