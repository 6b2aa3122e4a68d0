"""Redis away: the portal refuses what needs a rate limit with 503 redis_unavailable and Retry-After (closed,
not open: no sign-in attempt goes unlimited), writes nothing, and never answers a 500."""

from __future__ import annotations

from clickmint.embedded import pick_port
from kernel.redis.pyclient import Lazy
from portal.ratelimit import RateLimiter
from tests.portal.kit import add_user, login, portal_client, world


async def test_without_redis_sign_in_and_the_api_are_refused_503(db, settings):
    w = await world(db)
    await add_user(db, "away@p.example", "operator", merchant_id=w.merchant_id)
    async with portal_client(settings) as client:
        csrf = await login(client, "away@p.example")  # Redis answers: signed in
        portal = client.app.state.portal  # type: ignore[attr-defined]
        portal.limiter = RateLimiter(Lazy(f"redis://127.0.0.1:{pick_port(0)}/0", "no"), settings.key_prefix)
        sessions = await db.fetchval("SELECT count(*) FROM sessions")
        refused = await client.post("/api/v1/auth/login", json={"email": "away@p.example", "password": "x" * 12})
        api = await client.get("/api/v1/admin/offers", headers={"x-csrf-token": csrf})
        health = await client.get("/healthz")
    for response in (refused, api):
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "redis_unavailable" and response.headers["retry-after"] == "5"
    assert await db.fetchval("SELECT count(*) FROM sessions") == sessions  # nothing written
    assert health.status_code == 200
