"""Sign-in pages: the (branded) sign-in, sign-out, forgotten password and password reset. Before a
session exists, forms are protected by a double-submit CSRF cookie."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from portal import auth, i18n, invitations, passwords, refusals, users, validate
from portal.api import Ctx, client_key
from portal.api_auth import is_https, login_user, session_cookie
from portal.errors import ApiError
from portal.pages import DEFAULT_BRAND, brand_of, error_page, render


async def login_page(request: Request) -> Response:
    portal = request.app.state.portal
    slug = request.path_params.get("slug")
    brand = DEFAULT_BRAND
    if slug is not None:
        async with portal.pool.acquire() as conn:
            merchant_id = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", slug)
            if merchant_id is None:
                return render("error.html", 404, error="no such programme", code="not_found")
            brand = await brand_of(conn, merchant_id)
    csrf = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or passwords.new_token()
    response = render(
        "login.html",
        brand=brand,
        csrf=csrf,
        next=request.query_params.get("next", ""),
        notice=request.query_params.get("notice"),
    )
    response.set_cookie(
        auth.LOGIN_CSRF_COOKIE,
        csrf,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=is_https(request, portal.settings),
    )
    return response


def _login_csrf_ok(request: Request, form: dict[str, Any]) -> bool:
    import hmac

    cookie = request.cookies.get(auth.LOGIN_CSRF_COOKIE, "")
    sent = str(form.get("csrf_token", ""))
    return bool(cookie) and hmac.compare_digest(cookie.encode(), sent.encode())


async def login_submit(request: Request) -> Response:
    portal = request.app.state.portal
    form: dict[str, Any] = {}
    async with portal.pool.acquire() as conn:
        ctx = Ctx(request, conn, None, portal)
        try:
            form = await validate.body(request)
            if not _login_csrf_ok(request, form):
                raise ApiError(403, "csrf", "the sign-in form expired; reload the page and try again")
            _, token, _ = await login_user(ctx, str(form.get("email", "")), str(form.get("password", "")))
        except ApiError as exc:
            brand = DEFAULT_BRAND
            slug = str(form.get("merchant", "") or "")
            if slug:
                merchant_id = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", slug)
                brand = await brand_of(conn, merchant_id)
            response = render(
                "login.html",
                exc.status,
                brand=brand,
                error=refusals.shown(exc.detail),
                csrf=request.cookies.get(auth.LOGIN_CSRF_COOKIE, ""),
                next="",
                email=str(form.get("email", ""))[:254],
            )
            if exc.retry_after:
                response.headers["Retry-After"] = str(exc.retry_after)
            return response
        who = await auth.from_session(conn, token, portal.settings.idle_minutes)
    target = "/dashboard" if who and who.is_partner else "/admin"
    wanted = str(form.get("next", ""))
    if wanted.startswith("/") and not wanted.startswith("//") and "\\" not in wanted:
        target = wanted
    redirect = RedirectResponse(target, 303)
    session_cookie(redirect, portal.settings, is_https(request, portal.settings), token)
    return redirect


async def logout_submit(request: Request) -> Response:
    portal = request.app.state.portal
    async with portal.pool.acquire() as conn:
        token = request.cookies.get(auth.SESSION_COOKIE)
        who = await auth.from_session(conn, token, portal.settings.idle_minutes) if token else None
        if who is not None:
            form = await validate.body(request)
            try:
                auth.check_csrf(request, who, str(form.get("csrf_token", "")))
            except ApiError as exc:
                return error_page(exc, who)
            await auth.end_session(conn, token)
    response = RedirectResponse("/login?notice=" + quote(i18n.gettext_("Signed out.")), 303)
    session_cookie(response, portal.settings, is_https(request, portal.settings), None)
    return response


async def forgot(request: Request) -> Response:
    portal = request.app.state.portal
    csrf = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or passwords.new_token()
    if request.method == "GET":
        response = render("forgot.html", csrf=csrf)
        response.set_cookie(auth.LOGIN_CSRF_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict")
        return response
    async with portal.pool.acquire() as conn:
        try:
            form = await validate.body(request)
            if not _login_csrf_ok(request, form):
                raise ApiError(403, "csrf", "the form expired; reload the page and try again")
            email = users.check_email(str(form.get("email", "")))
            await portal.limiter.hit("reset", email, 3, 3600)
            await portal.limiter.hit("reset-net", client_key(request, portal.settings.proxies), 20, 3600)
            await users.send_reset(conn, portal.settings, email)
        except ApiError as exc:
            return render("forgot.html", exc.status, csrf=csrf, error=refusals.shown(exc.detail))
    notice = i18n.gettext_("If the address has an account, a reset link is on its way.")
    return RedirectResponse("/login?notice=" + quote(notice), 303)


async def reset_page(request: Request) -> Response:
    portal = request.app.state.portal
    csrf = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or passwords.new_token()
    token = request.query_params.get("token", "")
    if request.method == "GET":
        response = render("reset.html", csrf=csrf, token=token)
        response.set_cookie(auth.LOGIN_CSRF_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict")
        return response
    form: dict[str, Any] = {}
    async with portal.pool.acquire() as conn:
        try:
            form = await validate.body(request)
            if not _login_csrf_ok(request, form):
                raise ApiError(403, "csrf", "the form expired; reload the page and try again")
            await users.reset(
                conn, portal.settings.core.secret_key, str(form.get("token", "")), str(form.get("password", ""))
            )
        except ApiError as exc:
            return render(
                "reset.html",
                exc.status,
                csrf=csrf,
                token=str(form.get("token", "")),
                error=refusals.shown(exc.detail),
            )
    return RedirectResponse("/login?notice=" + quote(i18n.gettext_("Password set; sign in.")), 303)


async def invitation_page(request: Request) -> Response:
    """The link of an invitation mail: who invites, and a button to join (a form with the sign-in CSRF cookie)."""
    portal = request.app.state.portal
    csrf = request.cookies.get(auth.LOGIN_CSRF_COOKIE) or passwords.new_token()
    async with portal.pool.acquire() as conn:
        if request.method == "GET":
            token = request.query_params.get("token", "")
            try:
                found = await invitations.preview(conn, token)
            except ApiError as exc:
                return render(
                    "invitation.html",
                    exc.status,
                    csrf=csrf,
                    token="",
                    invitation=None,
                    error=refusals.shown(exc.detail),
                )
            response = render("invitation.html", csrf=csrf, token=token, invitation=found)
            response.set_cookie(auth.LOGIN_CSRF_COOKIE, csrf, max_age=3600, httponly=True, samesite="strict")
            return response
        form: dict[str, Any] = {}
        try:
            form = await validate.body(request)
            if not _login_csrf_ok(request, form):
                raise ApiError(403, "csrf", "the form expired; reload the page and try again")
            await portal.limiter.hit("invitation", client_key(request, portal.settings.proxies), 30, 3600)
            joined = await invitations.accept(conn, portal.settings, str(form.get("token", "")))
        except ApiError as exc:
            return render(
                "invitation.html", exc.status, csrf=csrf, token="", invitation=None, error=refusals.shown(exc.detail)
            )
    notice = (
        i18n.gettext_("You joined the programme. We mailed you a link to set your password.")
        if joined["set_password"]
        else i18n.gettext_("You joined the programme. Sign in to see its offers.")
    )
    return RedirectResponse(f"/m/{joined['merchant']}?notice={quote(notice)}", 303)


async def home(request: Request) -> Response:
    return RedirectResponse("/dashboard" if request.cookies.get(auth.SESSION_COOKIE) else "/login", 303)
