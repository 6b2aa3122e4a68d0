"""Users: sign-in, password reset by signed expiring token (mail goes to the outbox table), invitations."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg

from portal import i18n, mails, passwords
from portal.auth import Principal
from portal.errors import ApiError, invalid
from portal.settings import PortalSettings

_EMAIL = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}$")


def check_email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise invalid("email", "is not an e-mail address")
    return value


async def authenticate(conn: asyncpg.Connection, email: str, password: str) -> int | None:
    """The user id when the password matches; upgrades the stored hash when its parameters were weaker."""
    row = await conn.fetchrow("SELECT id, password_hash FROM users WHERE email = $1 AND status = 'active'", email)
    stored = row["password_hash"] if row else None
    ok, rehash = await asyncio.to_thread(passwords.verify_password, stored, password)
    if not ok or row is None:
        return None
    if rehash:
        new_hash = await asyncio.to_thread(passwords.hash_password, password)
        await conn.execute("UPDATE users SET password_hash = $2 WHERE id = $1", row["id"], new_hash)
    return row["id"]


async def set_password(conn: asyncpg.Connection, user_id: int, password: str) -> None:
    problem = passwords.check_password_rules(password)
    if problem:
        raise invalid("password", problem)
    new_hash = await asyncio.to_thread(passwords.hash_password, password)
    await conn.execute(
        "UPDATE users SET password_hash = $2, password_changed_at = now() WHERE id = $1", user_id, new_hash
    )
    await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)  # a new password signs everyone out


async def send_reset(conn: asyncpg.Connection, settings: PortalSettings, email: str, invitation: bool = False) -> None:
    """Mail a reset link when the address belongs to a user; say nothing either way (no account probing)."""
    row = await conn.fetchrow(
        """SELECT u.id, u.password_hash, u.locale, m.default_locale FROM users u
           LEFT JOIN merchants m ON m.id = u.merchant_id WHERE u.email = $1 AND u.status = 'active'""",
        email,
    )
    if row is None:
        return
    token = passwords.reset_token(settings.core.secret_key, row["id"], row["password_hash"])
    link = f"{settings.portal_url}/reset?token={token}"
    # The recipient's language (its setting, else its merchant's default), not the requester's browser's.
    t = i18n.translations(i18n.choose(row["locale"], None, row["default_locale"]))
    subject = t.gettext("Your Clickmint partner account") if invitation else t.gettext("Reset your Clickmint password")
    body = t.gettext(
        "Set your password here within the hour:\n\n%(link)s\n\nIf you did not ask for this, ignore this mail.\n"
    ) % {"link": link}
    await mails.queue(conn, email, subject, body)


async def reset(conn: asyncpg.Connection, secret_key: str, token: str, password: str) -> int:
    read = passwords.read_reset_token(token)
    row = (
        await conn.fetchrow("SELECT id, password_hash FROM users WHERE id = $1 AND status = 'active'", read[0])
        if read
        else None
    )
    if row is None or not passwords.check_reset_token(secret_key, token, row["password_hash"]):
        raise ApiError(400, "invalid_token", "the reset link is invalid, used or expired; ask for a new one")
    await set_password(conn, row["id"], password)
    return row["id"]


async def invite(
    conn: asyncpg.Connection,
    settings: PortalSettings,
    email: str,
    name: str,
    role: str,
    partner_id: int | None,
    merchant_id: int | None,
) -> int:
    """A user without a password and a mail with a link to set one."""
    user_id = await conn.fetchval(
        """INSERT INTO users (email, name, role, partner_id, merchant_id) VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (email) DO NOTHING RETURNING id""",
        email,
        name,
        role,
        partner_id,
        merchant_id,
    )
    if user_id is None:
        raise ApiError(409, "conflict", "a user with this e-mail exists")
    await send_reset(conn, settings, email, invitation=True)
    return user_id


async def create_by_operator(
    conn: asyncpg.Connection, settings: PortalSettings, who: Principal, values: dict[str, Any]
) -> dict[str, Any]:
    """An operator (or, by a network operator, a network operator) invited to set its password.

    No operator ever makes a partner's user: that is made when the partner accepts an invitation. The answer
    is the same whether or not the address already has an account, and so is the audit row (no existence
    oracle): an address that has one is told so by mail, and nothing else changes."""
    from portal.operator_data import audit, scope_merchant

    email = check_email(values["email"])
    role = values["role"]
    if role not in ("operator", "network"):
        raise ApiError(403, "forbidden", "partner users are made only when a partner accepts an invitation")
    if role == "network" and who.role != "network":
        raise ApiError(403, "forbidden", "only a network operator creates network operators")
    merchant_id = scope_merchant(who, values.get("merchant_id")) if role == "operator" else None
    async with conn.transaction():
        user_id = await conn.fetchval(
            """INSERT INTO users (email, name, role, merchant_id) VALUES ($1, $2, $3, $4)
               ON CONFLICT (email) DO NOTHING RETURNING id""",
            email,
            values.get("name", ""),
            role,
            merchant_id,
        )
        if user_id is not None:
            await send_reset(conn, settings, email, invitation=True)
        else:
            t = await mails.translations(conn, email)  # the existing account's language
            body = t.gettext(
                "An operator tried to give this address an operator account, but it already has one, which stays as"
                " it is. If you expected this, ask them to use another address.\n"
            )
            await mails.queue(conn, email, t.gettext("Someone tried to add you to Clickmint"), body)
        await audit(conn, who, merchant_id, "invite", "user", email, {"email": email, "role": role})
    return {"email": email, "role": role, "merchant_id": merchant_id, "status": "invited"}


async def create_by_owner(
    conn: asyncpg.Connection, settings: PortalSettings, who: Principal, values: dict[str, Any]
) -> dict[str, Any]:
    """The machine owner's `clickmint admin user add`: any role, a partner user for any partner included.
    More powerful than any operator on purpose (it runs with the database's credentials anyway)."""
    from portal.operator_data import audit

    if who.via != "cli":
        raise ApiError(403, "forbidden", "only the command line makes users of every kind")
    email = check_email(values["email"])
    role = values["role"]
    partner_id = merchant_id = None
    if role == "operator":
        merchant_id = values.get("merchant_id")
        if merchant_id is None:
            raise invalid("merchant_id", "is required for an operator")
    if role == "partner":
        partner_id = values.get("partner_id")
        if partner_id is None:
            raise invalid("partner_id", "is required for a partner user")
        merchant_id = await conn.fetchval(
            "SELECT min(merchant_id) FROM partner_programmes WHERE partner_id = $1", partner_id
        )
        if merchant_id is None:
            raise ApiError(404, "not_found", "no such partner")
    async with conn.transaction():
        user_id = await invite(conn, settings, email, values.get("name", ""), role, partner_id, merchant_id)
        await audit(conn, who, merchant_id, "create", "user", user_id, {"email": email, "role": role})
    return {"id": user_id, "email": email, "role": role}
