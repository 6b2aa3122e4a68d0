"""Who is asking: a session cookie (pages and the API, CSRF-checked) or an API key (the API only).

Every partner-scoped query takes its partner from the Principal made here, never from the URL or
the body: that is where isolation between partners lives.
"""

from __future__ import annotations

import datetime as dt
import hmac
from dataclasses import dataclass

import asyncpg
from starlette.requests import Request

from portal import passwords
from portal.errors import ApiError

SESSION_COOKIE = "cm_session"
LOGIN_CSRF_COOKIE = "cm_login_csrf"
UNSAFE = frozenset(("POST", "PUT", "PATCH", "DELETE"))


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    name: str
    role: str  # partner | operator | network
    partner_id: int | None
    merchant_id: int | None  # the operator's merchant (None for a network operator)
    via: str  # session | api_key
    scopes: frozenset[str]
    csrf: str | None = None  # the session's CSRF token (None for API keys)
    home_merchant_id: int | None = None  # a partner's branded landing, if it signed up through one

    @property
    def is_partner(self) -> bool:
        return self.role == "partner"

    @property
    def is_operator(self) -> bool:
        return self.role in ("operator", "network")

    def merchant_scope(self) -> int | None:
        """The one merchant an operator may touch, or None for a network operator (all of them)."""
        return self.merchant_id if self.role == "operator" else None


_USER_COLUMNS = "u.id, u.email, u.name, u.role, u.partner_id, u.merchant_id, u.status"


def _principal(row: asyncpg.Record, via: str, scopes: frozenset[str], csrf: str | None) -> Principal:
    return Principal(
        user_id=row["id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        partner_id=row["partner_id"],
        merchant_id=row["merchant_id"] if row["role"] != "partner" else None,
        via=via,
        scopes=scopes,
        csrf=csrf,
        home_merchant_id=row["merchant_id"] if row["role"] == "partner" else None,
    )


async def from_session(conn: asyncpg.Connection, token: str, idle_minutes: int) -> Principal | None:
    if not token or len(token) > 100:
        return None
    row = await conn.fetchrow(
        f"""UPDATE sessions s SET last_seen_at = now() FROM users u
            WHERE s.token_sha256 = $1 AND u.id = s.user_id AND u.status = 'active'
              AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(mins => $2)
            RETURNING {_USER_COLUMNS}, s.csrf_token""",
        passwords.sha256(token),
        idle_minutes,
    )
    if row is None:
        return None
    return _principal(row, "session", frozenset(("read", "write")), row["csrf_token"])


async def from_api_key(conn: asyncpg.Connection, key: str) -> Principal | None:
    split = passwords.split_api_key(key)
    if split is None:
        return None
    prefix, secret = split
    row = await conn.fetchrow(
        f"""SELECT {_USER_COLUMNS}, k.id AS key_id, k.secret_sha256, k.scopes FROM api_keys k
            JOIN users u ON u.id = k.user_id
            WHERE k.prefix = $1 AND k.revoked_at IS NULL AND u.status = 'active'""",
        prefix,
    )
    if row is None or not hmac.compare_digest(row["secret_sha256"], passwords.sha256(secret)):
        return None
    # Last use to the minute: one write per key per minute, not one per request.
    await conn.execute(
        """UPDATE api_keys SET last_used_at = now() WHERE id = $1
           AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')""",
        row["key_id"],
    )
    return _principal(row, "api_key", frozenset(row["scopes"]), None)


async def resolve(request: Request, conn: asyncpg.Connection, idle_minutes: int) -> Principal | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            raise ApiError(401, "unauthenticated", "use Authorization: Bearer <api key>")
        principal = await from_api_key(conn, value.strip())
        if principal is None:
            raise ApiError(401, "unauthenticated", "unknown, revoked or malformed API key")
        return principal
    token = request.cookies.get(SESSION_COOKIE)
    return await from_session(conn, token, idle_minutes) if token else None


def check_csrf(request: Request, principal: Principal, form_token: str | None) -> None:
    """Unsafe requests on a session must carry its CSRF token (header for scripts, field for forms)."""
    if principal.via != "session" or request.method not in UNSAFE:
        return
    sent = request.headers.get("x-csrf-token") or form_token or ""
    if not principal.csrf or not hmac.compare_digest(sent.encode(), principal.csrf.encode()):
        raise ApiError(403, "csrf", "missing or wrong CSRF token; reload the page and try again")


def require_scope(principal: Principal, method: str) -> None:
    needed = "read" if method in ("GET", "HEAD") else "write"
    if needed not in principal.scopes:
        raise ApiError(403, "forbidden", f"this API key lacks the {needed} scope")


async def start_session(conn: asyncpg.Connection, user_id: int, hours: int, old_token: str | None) -> tuple[str, str]:
    """A fresh session id at every login (never the one the browser came with); (token, csrf)."""
    if old_token:
        await conn.execute("DELETE FROM sessions WHERE token_sha256 = $1", passwords.sha256(old_token))
    token, csrf = passwords.new_token(), passwords.new_token()
    await conn.execute(
        "INSERT INTO sessions (token_sha256, user_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4)",
        passwords.sha256(token),
        user_id,
        csrf,
        dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours),
    )
    await conn.execute("DELETE FROM sessions WHERE expires_at < now()")
    return token, csrf


async def end_session(conn: asyncpg.Connection, token: str | None) -> None:
    if token:
        await conn.execute("DELETE FROM sessions WHERE token_sha256 = $1", passwords.sha256(token))
