"""Sign-in for scripts and pages alike, password reset, who am I, and API keys."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from portal import auth, invitations, passwords, users, validate
from portal.api import Ctx, Endpoint, client_key, json_response, request_scheme
from portal.errors import ApiError

LOGIN = {"email": (validate.text(3, 254), True), "password": (validate.text(1, 256), True)}
RESET = {"email": (validate.text(3, 254), True)}
RESET_CONFIRM = {"token": (validate.text(10, 200), True), "password": (validate.text(1, 256), True)}
NEW_KEY = {"name": (validate.text(1, 100), True), "scopes": (validate.choice("read", "read,write"), False)}


def session_cookie(response: Response, settings: Any, secure: bool, token: str | None) -> None:
    if token is None:
        response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure)
        return
    response.set_cookie(
        auth.SESSION_COOKIE,
        token,
        max_age=settings.session_hours * 3600,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure,
    )


def is_https(ctx_request: Any, settings: Any) -> bool:
    return request_scheme(ctx_request, settings.proxies) == "https"


async def login_user(ctx: Ctx, email: str, password: str) -> tuple[int, str, str]:
    """Rate-limited per e-mail and per client network; (user id, session token, csrf token)."""
    settings = ctx.portal.settings
    email = email.strip().lower()
    limiter = ctx.portal.limiter
    await limiter.hit("login-net", client_key(ctx.request, settings.proxies), settings.login_per_minute * 5)
    await limiter.hit("login", email, settings.login_per_minute)
    user_id = await users.authenticate(ctx.conn, email, password)
    if user_id is None:
        raise ApiError(401, "bad_credentials", "wrong e-mail or password")
    token, csrf = await auth.start_session(
        ctx.conn, user_id, settings.session_hours, ctx.request.cookies.get(auth.SESSION_COOKIE)
    )
    return user_id, token, csrf


async def login(ctx: Ctx) -> Response:
    values = await ctx.body(LOGIN)
    user_id, token, csrf = await login_user(ctx, values["email"], values["password"])
    response = json_response({"user_id": user_id, "csrf_token": csrf})
    session_cookie(response, ctx.portal.settings, is_https(ctx.request, ctx.portal.settings), token)
    return response


async def logout(ctx: Ctx) -> Response:
    await auth.end_session(ctx.conn, ctx.request.cookies.get(auth.SESSION_COOKIE))
    response = json_response({"signed_out": True})
    session_cookie(response, ctx.portal.settings, is_https(ctx.request, ctx.portal.settings), None)
    return response


async def reset_request(ctx: Ctx) -> Any:
    values = await ctx.body(RESET)
    email = users.check_email(values["email"])
    await ctx.portal.limiter.hit("reset", email, 3, 3600)
    await users.send_reset(ctx.conn, ctx.portal.settings, email)
    return {"sent": "if the address has an account, a reset link is on its way"}


async def reset_confirm(ctx: Ctx) -> Any:
    values = await ctx.body(RESET_CONFIRM)
    await users.reset(ctx.conn, ctx.portal.settings.core.secret_key, values["token"], values["password"])
    return {"reset": True}


INVITATION = {"token": (validate.text(10, 200), True)}


async def accept_invitation(ctx: Ctx) -> Any:
    """Whoever holds the token mailed to the invited address joins the programme as that partner."""
    values = await ctx.body(INVITATION)
    await ctx.portal.limiter.hit("invitation", client_key(ctx.request, ctx.portal.settings.proxies), 30, 3600)
    return await invitations.accept(ctx.conn, ctx.portal.settings, values["token"])


async def me(ctx: Ctx) -> Any:
    who = ctx.who
    return {
        "user_id": who.user_id,
        "email": who.email,
        "name": who.name,
        "role": who.role,
        "partner_id": who.partner_id,
        "merchant_id": who.merchant_id,
        "via": who.via,
        "scopes": sorted(who.scopes),
        "csrf_token": who.csrf,
    }


async def keys(ctx: Ctx) -> Any:
    rows = await ctx.conn.fetch(
        """SELECT id, prefix, name, scopes, created_at, last_used_at, revoked_at FROM api_keys
           WHERE user_id = $1 ORDER BY id""",
        ctx.who.user_id,
    )
    return {"keys": [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in dict(r).items()} for r in rows]}


async def create_key(ctx: Ctx) -> Any:
    values = await ctx.body(NEW_KEY)
    key, prefix, digest = passwords.new_api_key()
    scopes = values.get("scopes", "read").split(",")
    key_id = await ctx.conn.fetchval(
        "INSERT INTO api_keys (user_id, prefix, secret_sha256, name, scopes) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        ctx.who.user_id,
        prefix,
        digest,
        values["name"],
        scopes,
    )
    return {"id": key_id, "key": key, "prefix": prefix, "scopes": scopes, "shown_once": True}


async def revoke_key(ctx: Ctx) -> Any:
    done = await ctx.conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        ctx.path_int("key_id"),
        ctx.who.user_id,
    )
    if done.endswith(" 0"):
        raise ApiError(404, "not_found", "no such key")
    return {"revoked": True}


ENDPOINTS = [
    Endpoint(
        "POST",
        "/api/v1/auth/login",
        login,
        "public",
        "Sign in; sets the session cookie, returns the CSRF token. JSON only, and from the portal's own origin when"
        " a browser sends it (415 unsupported_media_type, 403 cross_origin)",
        body=LOGIN,
        tag="auth",
    ),
    Endpoint("POST", "/api/v1/auth/logout", logout, "public", "Sign out (JSON, from the portal's origin)", tag="auth"),
    Endpoint(
        "POST",
        "/api/v1/auth/password-reset",
        reset_request,
        "public",
        "Mail a password reset link",
        body=RESET,
        tag="auth",
        status=202,
    ),
    Endpoint(
        "POST",
        "/api/v1/auth/password-reset/confirm",
        reset_confirm,
        "public",
        "Set a new password with a reset token",
        body=RESET_CONFIRM,
        tag="auth",
    ),
    Endpoint(
        "POST",
        "/api/v1/invitations/accept",
        accept_invitation,
        "public",
        "Accept an invitation to a merchant's programme with the token mailed to the invited address; a new"
        " partner then gets a mail to set its password",
        body=INVITATION,
        tag="auth",
    ),
    Endpoint("GET", "/api/v1/me", me, "any", "The signed-in user", tag="auth"),
    Endpoint("GET", "/api/v1/keys", keys, "any", "The user's API keys (never their secrets)", tag="auth"),
    Endpoint(
        "POST",
        "/api/v1/keys",
        create_key,
        "any",
        "Create an API key; its secret is shown once",
        body=NEW_KEY,
        tag="auth",
        status=201,
    ),
    Endpoint("DELETE", "/api/v1/keys/{key_id}", revoke_key, "any", "Revoke an API key", tag="auth"),
]
