"""Sign-in, sessions, CSRF, API keys, rate limits, password reset and stored credentials."""

from __future__ import annotations

import re

import pytest
from argon2 import PasswordHasher, Type

from portal import passwords
from tests.portal.kit import PASSWORD, add_user, api_key, csrf_headers, login, portal_client, world


async def test_login_sets_a_hardened_cookie_and_rotates_the_session(db, settings):
    await world(db)
    async with portal_client(settings) as client:
        response = await client.post("/api/v1/auth/login", json={"email": "Alice@P.example", "password": PASSWORD})
        assert response.status_code == 200
        cookie = response.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
        assert "Max-Age=43200" in cookie
        first = client.cookies["cm_session"]
        assert len(first) >= 43  # 256 random bits, base64url
        await login(client, "alice@p.example")
        second = client.cookies["cm_session"]
        assert second != first
        # The session the browser came with is gone, not merely replaced in the browser.
        client.cookies.set("cm_session", first)
        assert (await client.get("/api/v1/me")).status_code == 401
        client.cookies.set("cm_session", second)
        assert (await client.get("/api/v1/me")).json()["email"] == "alice@p.example"
    stored = await db.fetch("SELECT token_sha256 FROM sessions")
    assert all(row["token_sha256"] not in (first.encode(), second.encode()) for row in stored)


async def test_secure_cookie_behind_https(db, settings):
    await world(db)
    async with portal_client(settings, CLICKMINT_TRUST_FORWARDED="true") as client:
        response = await client.post(
            "/api/v1/auth/login",
            json={"email": "alice@p.example", "password": PASSWORD},
            headers={"x-forwarded-proto": "https"},
        )
        assert "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize(
    ("email", "password"),
    [("alice@p.example", "wrong password!"), ("nobody@p.example", PASSWORD), ("alice@p.example", "")],
)
async def test_bad_credentials_are_refused_alike(db, settings, email, password):
    await world(db)
    async with portal_client(settings) as client:
        response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
        assert response.status_code in (400, 401)
        assert response.json()["error"] in ("bad_credentials", "invalid_field")
        assert "cm_session" not in client.cookies
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


async def test_login_rate_limit_answers_429_with_retry_after(db, settings):
    await world(db)
    async with portal_client(settings, CLICKMINT_LOGIN_PER_MINUTE="3") as client:
        codes = []
        for _ in range(5):
            response = await client.post(
                "/api/v1/auth/login", json={"email": "alice@p.example", "password": "nope-nope-nope"}
            )
            codes.append(response.status_code)
        assert codes == [401, 401, 401, 429, 429]
        assert 1 <= int(response.headers["retry-after"]) <= 60
        assert response.json()["error"] == "rate_limited"
        # Even the right password waits out the window: a guesser learns nothing.
        response = await client.post("/api/v1/auth/login", json={"email": "alice@p.example", "password": PASSWORD})
        assert response.status_code == 429


async def test_api_rate_limit(db, settings):
    await world(db)
    async with portal_client(settings, CLICKMINT_API_PER_MINUTE="5") as client:
        await login(client, "alice@p.example")
        codes = [(await client.get("/api/v1/partner/offers")).status_code for _ in range(7)]
        assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]


async def test_unsafe_requests_on_a_session_need_the_csrf_token(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        body = {"offer_id": w.ids["public_offer"]}
        refused = await client.post("/api/v1/partner/links", json=body)
        assert refused.status_code == 403 and refused.json()["error"] == "csrf"
        wrong = await client.post("/api/v1/partner/links", json=body, headers=csrf_headers("x" * 43))
        assert wrong.status_code == 403
        assert await db.fetchval("SELECT count(*) FROM links WHERE partner_id = $1", w.a_partner) == 1
        done = await client.post("/api/v1/partner/links", json=body, headers=csrf_headers(csrf))
        assert done.status_code == 201
        # Forms too: a page POST without the token is refused.
        page = await client.post("/links", data={"offer_id": str(w.ids["public_offer"])})
        assert page.status_code == 403
    assert await db.fetchval("SELECT count(*) FROM links WHERE partner_id = $1", w.a_partner) == 2


async def test_sessions_expire_absolutely_and_when_idle(db, settings):
    await world(db)
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
        assert (await client.get("/api/v1/me")).status_code == 200
        await db.execute("UPDATE sessions SET last_seen_at = now() - interval '3 hours'")
        assert (await client.get("/api/v1/me")).status_code == 401
        await login(client, "alice@p.example")
        await db.execute("UPDATE sessions SET expires_at = now() - interval '1 second'")
        assert (await client.get("/api/v1/me")).status_code == 401
        page = await client.get("/dashboard")
        assert page.status_code == 303 and page.headers["location"].startswith("/login")


async def test_logout_ends_the_session(db, settings):
    await world(db)
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
        token = client.cookies["cm_session"]
        assert (await client.post("/api/v1/auth/logout", json={})).status_code == 200
        client.cookies.set("cm_session", token)
        assert (await client.get("/api/v1/me")).status_code == 401
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


async def test_api_keys_shown_once_stored_hashed_scoped_revocable(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        made = await client.post(
            "/api/v1/keys", json={"name": "reporting", "scopes": "read"}, headers=csrf_headers(csrf)
        )
        assert made.status_code == 201
        key = made.json()["key"]
        assert re.fullmatch(r"cm_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", key)
        listed = (await client.get("/api/v1/keys")).json()["keys"]
        assert key not in str(listed) and listed[-1]["prefix"] == made.json()["prefix"]
    dump = str([dict(r) for r in await db.fetch("SELECT * FROM api_keys")])
    assert key.split("_", 2)[2] not in dump
    async with portal_client(settings) as client:
        bearer = {"authorization": f"Bearer {key}"}
        assert (await client.get("/api/v1/partner/offers", headers=bearer)).status_code == 200
        assert await db.fetchval("SELECT last_used_at FROM api_keys WHERE id = $1", made.json()["id"]) is not None
        write = await client.post("/api/v1/partner/links", json={"offer_id": w.ids["public_offer"]}, headers=bearer)
        assert write.status_code == 403 and write.json()["error"] == "forbidden"
        tampered = {"authorization": f"Bearer {key[:-1]}{'A' if key[-1] != 'A' else 'B'}"}
        assert (await client.get("/api/v1/partner/offers", headers=tampered)).status_code == 401
        assert (await client.get("/api/v1/partner/offers", headers={"authorization": "Basic abc"})).status_code == 401
    async with portal_client(settings) as client:
        csrf = await login(client, "alice@p.example")
        revoked = await client.delete(f"/api/v1/keys/{made.json()['id']}", headers=csrf_headers(csrf))
        assert revoked.status_code == 200
    async with portal_client(settings) as client:
        assert (await client.get("/api/v1/partner/offers", headers=bearer)).status_code == 401


async def test_write_key_works_without_csrf(db, settings):
    w = await world(db)
    key = await api_key(db, w.a_user, ("read", "write"))
    async with portal_client(settings) as client:
        response = await client.post(
            "/api/v1/partner/links",
            json={"offer_id": w.ids["public_offer"]},
            headers={"authorization": f"Bearer {key}"},
        )
        assert response.status_code == 201


async def test_stored_hashes_are_argon2id_at_owasp_parameters(db, settings):
    await world(db)
    for (stored,) in await db.fetch("SELECT password_hash FROM users"):
        assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_a_weaker_hash_is_upgraded_at_login(db, settings):
    w = await world(db)
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1, type=Type.ID).hash(PASSWORD)
    await db.execute("UPDATE users SET password_hash = $2 WHERE id = $1", w.a_user, weak)
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
    upgraded = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", w.a_user)
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and upgraded != weak


async def test_disabled_user_cannot_sign_in_or_use_keys(db, settings):
    w = await world(db)
    key = await api_key(db, w.a_user)
    await db.execute("UPDATE users SET status = 'disabled' WHERE id = $1", w.a_user)
    async with portal_client(settings) as client:
        response = await client.post("/api/v1/auth/login", json={"email": "alice@p.example", "password": PASSWORD})
        assert response.status_code == 401
        assert (await client.get("/api/v1/me", headers={"authorization": f"Bearer {key}"})).status_code == 401


async def test_password_reset_by_signed_expiring_single_use_token(db, settings):
    w = await world(db)
    async with portal_client(settings) as client:
        asked = await client.post("/api/v1/auth/password-reset", json={"email": "alice@p.example"})
        assert asked.status_code == 202
        unknown = await client.post("/api/v1/auth/password-reset", json={"email": "nobody@p.example"})
        assert unknown.status_code == 202 and unknown.json() == asked.json()
        mails = await db.fetch("SELECT to_email, body FROM outbox")
        assert [m["to_email"] for m in mails] == ["alice@p.example"]
        token = re.search(r"token=([^\s]+)", mails[0]["body"]).group(1)
        short = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": "short"})
        assert short.status_code == 400 and short.json()["error"] == "invalid_field"
        new = "a brand new passphrase"
        done = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": new})
        assert done.status_code == 200
        again = await client.post("/api/v1/auth/password-reset/confirm", json={"token": token, "password": new + "!"})
        assert again.status_code == 400 and again.json()["error"] == "invalid_token"
        await login(client, "alice@p.example", new)
    old_hash = await db.fetchval("SELECT password_hash FROM users WHERE id = $1", w.a_user)
    expired = passwords.reset_token(settings.secret_key, w.a_user, old_hash, now=0)
    forged = f"{w.b_user}.9999999999.AAAAAAAAAAAAAAAAAAAAAAAA"
    async with portal_client(settings) as client:
        for token in (expired, forged, "garbage-token"):
            response = await client.post(
                "/api/v1/auth/password-reset/confirm", json={"token": token, "password": "x" * 12}
            )
            assert response.status_code == 400 and response.json()["error"] == "invalid_token"
    assert await db.fetchval("SELECT password_hash FROM users WHERE id = $1", w.a_user) == old_hash


async def test_reset_requests_are_rate_limited(db, settings):
    await world(db)
    async with portal_client(settings) as client:
        codes = [
            (await client.post("/api/v1/auth/password-reset", json={"email": "alice@p.example"})).status_code
            for _ in range(4)
        ]
    assert codes == [202, 202, 202, 429]
    assert await db.fetchval("SELECT count(*) FROM outbox") == 3


@pytest.mark.parametrize(
    ("headers", "content", "code"),
    [
        ({"content-type": "application/json"}, b"{not json", "invalid_json"),
        ({"content-type": "application/json"}, b"[1, 2]", "invalid_json"),
        ({"content-type": "application/json"}, b'{"email": "a@b.c", "password": "x", "admin": true}', "unknown_field"),
        ({"content-type": "application/json"}, b'{"email": 5, "password": "x"}', "invalid_field"),
        (
            {"content-type": "application/json"},
            b'{"email": "a@b.c", "password": "' + b"x" * 70_000 + b'"}',
            "too_large",
        ),
        ({"content-type": "application/x-www-form-urlencoded"}, b"email=%ff%fe&password=x", "unsupported_media_type"),
    ],
)
async def test_malformed_bodies_are_refused_with_a_code(db, settings, headers, content, code):
    await add_user(db, "x@p.example", "network")
    async with portal_client(settings) as client:
        response = await client.post("/api/v1/auth/login", content=content, headers=headers)
        assert 400 <= response.status_code < 500
        assert response.json()["error"] == code
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


async def test_unknown_api_route_and_method_are_json_errors(db, settings):
    async with portal_client(settings) as client:
        missing = await client.get("/api/v1/nothing-here")
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"
        wrong = await client.put("/api/v1/auth/login")
        assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


async def test_security_headers_on_every_answer(db, settings):
    async with portal_client(settings) as client:
        for path in ("/login", "/api/v1/openapi.json", "/nothing"):
            response = await client.get(path)
            assert response.headers["x-frame-options"] == "DENY"
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["x-content-type-options"] == "nosniff"


async def test_every_answer_carries_a_request_id(db, settings):
    async with portal_client(settings) as client:
        mine = await client.get("/healthz", headers={"x-request-id": "req-12345678"})
        assert mine.headers["x-request-id"] == "req-12345678"
        bad = await client.get("/healthz", headers={"x-request-id": "bad id\r\nx"})
        assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["x-request-id"])
