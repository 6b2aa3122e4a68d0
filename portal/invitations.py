"""Invitations to a merchant's programme: an operator invites an e-mail address, the partner accepts.

Only whoever reads that mailbox can accept (the mail carries a random token; only its SHA-256 is stored), or
the partner itself, signed in, by applying to the programme it was invited to. An operator learns nothing
from inviting: the answer is the same whether the address belongs to a partner of another merchant, to a
user of any kind, or to nobody; and accepting never changes an existing partner's name or credentials. A
partner that did not exist is made when it accepts, with a user whose password it sets through a mail to
the same address.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg

from portal import mails, passwords, users
from portal.auth import Principal
from portal.errors import ApiError, not_found
from portal.settings import PortalSettings

VALID_FOR = dt.timedelta(days=14)


async def invite(
    conn: asyncpg.Connection, settings: PortalSettings, who: Principal, merchant_id: int, values: dict[str, Any]
) -> dict[str, Any]:
    """Invite `values["email"]` to the merchant's programme (again: a new token and mail replace the old)."""
    from portal.operator_data import audit

    email = users.check_email(values["email"])
    token = passwords.new_token()
    async with conn.transaction():
        merchant = await conn.fetchrow("SELECT name, slug FROM merchants WHERE id = $1", merchant_id)
        if merchant is None:
            raise not_found("merchant")
        invitation_id = await conn.fetchval(
            """INSERT INTO partner_invitations (merchant_id, email, name, currency, min_payout_minor, token_sha256,
                                                invited_by, expires_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8)
               ON CONFLICT (merchant_id, email) WHERE status = 'pending' DO UPDATE SET
                   name = EXCLUDED.name, currency = EXCLUDED.currency, min_payout_minor = EXCLUDED.min_payout_minor,
                   token_sha256 = EXCLUDED.token_sha256, invited_by = EXCLUDED.invited_by,
                   expires_at = EXCLUDED.expires_at
               RETURNING id""",
            merchant_id,
            email,
            values["name"],
            values.get("currency", "USD"),
            values.get("min_payout_minor", 0),
            passwords.sha256(token),
            who.email,
            VALID_FOR,
        )
        link = f"{settings.portal_url}/invitation?token={token}"
        # In the invited address's language: its user's setting if it has one, else this merchant's default.
        t = await mails.translations(conn, email, merchant_id)
        words = {"merchant": merchant["name"], "days": VALID_FOR.days, "link": link}
        body = t.gettext(
            "%(merchant)s invites you to its partner programme.\n\n"
            "Join it here within %(days)s days:\n\n%(link)s\n\n"
            "If you already are a partner elsewhere on this Clickmint, the programme joins your existing account.\n"
            "If you do not know this merchant, ignore this mail: nothing happens without you.\n"
        )
        subject = t.gettext("%(merchant)s invites you to its partner programme") % words
        await mails.queue(conn, email, subject, body % words)
        await audit(conn, who, merchant_id, "invite", "partner_invitation", invitation_id, {"email": email})
    return {"invitation_id": invitation_id, "merchant_id": merchant_id, "email": email, "status": "pending"}


async def preview(conn: asyncpg.Connection, token: str) -> dict[str, Any]:
    """What an invitation link offers (for the page that asks to accept it); refuses a bad, used or old one."""
    row = await conn.fetchrow(
        """SELECT i.id, i.email, m.name AS merchant, m.slug FROM partner_invitations i
           JOIN merchants m ON m.id = i.merchant_id
           WHERE i.token_sha256 = $1 AND i.status = 'pending' AND i.expires_at > now()""",
        passwords.sha256(token),
    )
    if row is None:
        raise _invalid()
    return dict(row)


def _invalid() -> ApiError:
    return ApiError(400, "invalid_token", "the invitation link is invalid, used, withdrawn or expired")


async def accept(conn: asyncpg.Connection, settings: PortalSettings, token: str) -> dict[str, Any]:
    """The mailbox's owner accepts: the partner (made now if new) joins the programme, approved."""
    from portal.operator_data import audit

    if not token or len(token) > 200:
        raise _invalid()
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT i.id, i.merchant_id, i.email, i.name, i.currency, i.min_payout_minor, m.slug
               FROM partner_invitations i JOIN merchants m ON m.id = i.merchant_id
               WHERE i.token_sha256 = $1 AND i.status = 'pending' AND i.expires_at > now() FOR UPDATE OF i""",
            passwords.sha256(token),
        )
        if row is None:
            raise _invalid()
        partner_id = await conn.fetchval("SELECT id FROM partners WHERE email = $1", row["email"])
        if partner_id is None:
            partner_id = await conn.fetchval(
                "INSERT INTO partners (name, email, currency, min_payout_minor) VALUES ($1, $2, $3, $4) RETURNING id",
                row["name"],
                row["email"],
                row["currency"],
                row["min_payout_minor"],
            )
        new_user = await _join(conn, partner_id, row["merchant_id"], row["email"], row["name"])
        await conn.execute(
            "UPDATE partner_invitations SET status = 'accepted', accepted_at = now(), partner_id = $2 WHERE id = $1",
            row["id"],
            partner_id,
        )
        actor = Principal(0, f"partner:{row['email']}", "", "partner", partner_id, None, "invitation", frozenset())
        await audit(conn, actor, row["merchant_id"], "accept", "partner_invitation", row["id"], {})
        if new_user:
            await users.send_reset(conn, settings, row["email"], invitation=True)
    return {"merchant": row["slug"], "merchant_id": row["merchant_id"], "status": "approved", "set_password": new_user}


async def _join(conn: asyncpg.Connection, partner_id: int, merchant_id: int, email: str, name: str) -> bool:
    """The partner in the programme, approved; a partner user for its own address when it has none yet.
    True when that user was made now (its password is then set through a mail to the same address)."""
    await conn.execute(
        """INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')
           ON CONFLICT (partner_id, merchant_id) DO UPDATE SET status = 'approved'""",
        partner_id,
        merchant_id,
    )
    if await conn.fetchval("SELECT 1 FROM users WHERE partner_id = $1", partner_id):
        return False
    made = await conn.fetchval(
        """INSERT INTO users (email, name, role, partner_id, merchant_id) VALUES ($1, $2, 'partner', $3, $4)
           ON CONFLICT (email) DO NOTHING RETURNING id""",
        email,
        name,
        partner_id,
        merchant_id,
    )
    return made is not None


async def accept_as_partner(conn: asyncpg.Connection, partner_id: int, merchant_id: int) -> bool:
    """A signed-in partner applying to a programme that invited its address accepts that invitation."""
    async with conn.transaction():
        invitation = await conn.fetchval(
            """SELECT i.id FROM partner_invitations i JOIN partners p ON p.email = i.email
               WHERE p.id = $1 AND i.merchant_id = $2 AND i.status = 'pending' AND i.expires_at > now()
               FOR UPDATE OF i""",
            partner_id,
            merchant_id,
        )
        if invitation is None:
            return False
        await conn.execute(
            """INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')
               ON CONFLICT (partner_id, merchant_id) DO UPDATE SET status = 'approved'""",
            partner_id,
            merchant_id,
        )
        await conn.execute(
            "UPDATE partner_invitations SET status = 'accepted', accepted_at = now(), partner_id = $2 WHERE id = $1",
            invitation,
            partner_id,
        )
    return True


async def pending_for(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    """The programmes that invited the partner's own address and wait for its answer."""
    rows = await conn.fetch(
        """SELECT m.id AS merchant_id, m.slug, m.name, 'invited' AS status FROM partner_invitations i
           JOIN partners p ON p.email = i.email JOIN merchants m ON m.id = i.merchant_id
           WHERE p.id = $1 AND i.status = 'pending' AND i.expires_at > now()
             AND NOT EXISTS (SELECT 1 FROM partner_programmes pp WHERE pp.partner_id = p.id
                             AND pp.merchant_id = i.merchant_id AND pp.status = 'approved')
           ORDER BY m.name""",
        partner_id,
    )
    return [dict(r) for r in rows]


async def listing(conn: asyncpg.Connection, who: Principal) -> list[dict[str, Any]]:
    """The operator's invitations (its merchant's; a network operator's: all)."""
    scope = who.merchant_scope()
    rows = await conn.fetch(
        """SELECT id, merchant_id, email, name, status, created_at, expires_at, accepted_at,
                  CASE WHEN status = 'accepted' THEN partner_id END AS partner_id
           FROM partner_invitations WHERE ($1::bigint IS NULL OR merchant_id = $1) ORDER BY id DESC""",
        scope,
    )
    out = []
    for r in rows:
        item = dict(r)
        if item["status"] == "pending" and r["expires_at"] <= dt.datetime.now(dt.UTC):
            item["status"] = "expired"
        for key in ("created_at", "expires_at", "accepted_at"):
            item[key] = item[key].isoformat() if item[key] else None
        out.append(item)
    return out


async def withdraw(conn: asyncpg.Connection, who: Principal, invitation_id: int) -> dict[str, Any]:
    from portal.operator_data import audit

    async with conn.transaction():
        merchant_id = await conn.fetchval(
            """UPDATE partner_invitations SET status = 'withdrawn'
               WHERE id = $1 AND status = 'pending' AND ($2::bigint IS NULL OR merchant_id = $2)
               RETURNING merchant_id""",
            invitation_id,
            who.merchant_scope(),
        )
        if merchant_id is None:
            raise ApiError(409, "conflict", "only a pending invitation can be withdrawn")
        await audit(conn, who, merchant_id, "withdraw", "partner_invitation", invitation_id, {})
    return {"invitation_id": invitation_id, "status": "withdrawn"}
