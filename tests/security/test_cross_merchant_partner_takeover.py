"""Cross-merchant partner takeover, tried as it was done on the real portal: merchant Y's operator enrols
merchant X's partner into Y by its e-mail, makes a partner user for it with an address Y controls, sets its
password through the reset mail, signs in and reads X's orders and customers, and adds a postback that would
forward every future X conversion. Now the enrolment is only an invitation the partner itself must accept,
no operator makes, changes or resets a partner's credentials, and the partner's own way in still works."""

from __future__ import annotations

import re

import asyncpg
import httpx

from kernel.settings import Settings
from tests.portal.kit import PASSWORD, add_user
from tests.security.live import live

X_PARTNER_EMAIL = "pat@deals.example"


async def _x_and_y(db: asyncpg.Connection) -> dict[str, int]:
    x = await db.fetchval("INSERT INTO merchants (slug, name) VALUES ('x-shop', 'X Shop') RETURNING id")
    y = await db.fetchval("INSERT INTO merchants (slug, name) VALUES ('y-shop', 'Y Shop') RETURNING id")
    offer = await db.fetchval(
        """INSERT INTO offers (merchant_id, name, destination_url, currency)
           VALUES ($1, 'X offer', 'https://x.example/', 'USD') RETURNING id""",
        x,
    )
    pat = await db.fetchval("INSERT INTO partners (name, email) VALUES ('Pat Deals', $1) RETURNING id", X_PARTNER_EMAIL)
    await db.execute(
        "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')", pat, x
    )
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                    currency, status, hold_until, customer_ref)
           VALUES (gen_random_uuid(), now(), 'purchase', $1, $2, $3, 'X-ORDER-SECRET', 4200, 'USD', 'pending',
                   now() + interval '30 days', 'X-CUSTOMER-SECRET')""",
        x,
        offer,
        pat,
    )
    await add_user(db, X_PARTNER_EMAIL, "partner", partner_id=pat, merchant_id=x)
    await add_user(db, "ops@y.example", "operator", merchant_id=y)
    return {"x": x, "y": y, "pat": pat, "offer": offer}


async def _login(client: httpx.AsyncClient, base: str, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post(f"{base}/api/v1/auth/login", json={"email": email, "password": password})


async def test_another_merchants_operator_cannot_take_over_a_partner(settings: Settings, db: asyncpg.Connection):
    ids = await _x_and_y(db)
    async with live(settings, ingest=False) as lv, lv.client() as y_ops:
        csrf = (await _login(y_ops, lv.portal_url, "ops@y.example")).json()["csrf_token"]
        headers = {"x-csrf-token": csrf}

        # 1. Y "adds" X's partner by its e-mail: at most an invitation, never a membership the partner did not ask for.
        enrolled = await y_ops.post(
            f"{lv.portal_url}/api/v1/admin/partners", json={"name": "Pat", "email": X_PARTNER_EMAIL}, headers=headers
        )
        assert (
            await db.fetchval(
                "SELECT count(*) FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2",
                ids["pat"],
                ids["y"],
            )
            == 0
        )
        assert enrolled.status_code == 201, enrolled.text
        assert "id" not in enrolled.json() and "partner_id" not in enrolled.json()  # says nothing about who exists
        listed = (await y_ops.get(f"{lv.portal_url}/api/v1/admin/partners")).json()["partners"]
        assert all(p.get("id") != ids["pat"] for p in listed)

        # 2. Y makes a partner-role user for it with an address Y controls: refused.
        user = await y_ops.post(
            f"{lv.portal_url}/api/v1/admin/users",
            json={"email": "takeover@y.example", "role": "partner", "partner_id": ids["pat"]},
            headers=headers,
        )
        assert user.status_code in (400, 403, 404), user.text
        assert await db.fetchval("SELECT count(*) FROM users WHERE email = 'takeover@y.example'") == 0

        # 3. The reset mail for that address: nothing to reset, nothing mailed.
        await y_ops.post(f"{lv.portal_url}/api/v1/auth/password-reset", json={"email": "takeover@y.example"})
        assert await db.fetchval("SELECT count(*) FROM outbox WHERE to_email = 'takeover@y.example'") == 0

        # 4. Y's operator reads nothing of X's programme.
        for path in ("/api/v1/admin/reports", "/api/v1/admin/partners", "/api/v1/admin/conversions"):
            answer = await y_ops.get(f"{lv.portal_url}{path}")
            assert "SECRET" not in answer.text, (path, answer.text[:300])

    # No credential of Pat's was made or changed by anyone but Pat.
    assert await db.fetchval("SELECT count(*) FROM users WHERE partner_id = $1", ids["pat"]) == 1
    assert await db.fetchval("SELECT count(*) FROM sessions") == 1  # Y's operator's own
    assert await db.fetchval("SELECT count(*) FROM partner_postbacks") == 0


async def test_the_partner_accepts_the_invitation_itself(settings: Settings, db: asyncpg.Connection):
    """The proper path: the invitation goes by mail to the address the partner already owns; following it
    (or applying itself) is what makes it a member. Its credentials stay its own throughout."""
    ids = await _x_and_y(db)
    hash_before = await db.fetchval("SELECT password_hash FROM users WHERE email = $1", X_PARTNER_EMAIL)
    async with live(settings, ingest=False) as lv, lv.client() as y_ops, lv.client() as pat:
        csrf = (await _login(y_ops, lv.portal_url, "ops@y.example")).json()["csrf_token"]
        invited = await y_ops.post(
            f"{lv.portal_url}/api/v1/admin/partners",
            json={"name": "Pat", "email": X_PARTNER_EMAIL},
            headers={"x-csrf-token": csrf},
        )
        assert invited.status_code == 201
        mail = await db.fetchrow("SELECT to_email, body FROM outbox ORDER BY id DESC LIMIT 1")
        assert mail["to_email"] == X_PARTNER_EMAIL
        token = re.search(r"/invitation\?token=([A-Za-z0-9._-]+)", mail["body"]).group(1)
        assert "reset" not in mail["body"]  # an existing partner's password is never touched

        # Someone holding a forged or altered token gets nothing.
        forged = await pat.post(f"{lv.portal_url}/api/v1/invitations/accept", json={"token": token[:-2] + "xx"})
        assert forged.status_code == 400 and forged.json()["error"] == "invalid_token"

        accepted = await pat.post(f"{lv.portal_url}/api/v1/invitations/accept", json={"token": token})
        assert accepted.status_code == 200, accepted.text
        assert accepted.json()["status"] == "approved"
        assert (
            await db.fetchval(
                "SELECT status FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2", ids["pat"], ids["y"]
            )
            == "approved"
        )
        again = await pat.post(f"{lv.portal_url}/api/v1/invitations/accept", json={"token": token})
        assert again.status_code == 400  # used

        # Pat signs in with its own password, sees both programmes; Y's operator now sees Pat, still not X's orders.
        assert (await _login(pat, lv.portal_url, X_PARTNER_EMAIL)).status_code == 200
        programmes = (await pat.get(f"{lv.portal_url}/api/v1/partner/programmes")).json()["programmes"]
        assert {p["slug"] for p in programmes} == {"x-shop", "y-shop"}
        listed = (await y_ops.get(f"{lv.portal_url}/api/v1/admin/partners")).json()["partners"]
        assert [p["id"] for p in listed] == [ids["pat"]]
        assert "SECRET" not in (await y_ops.get(f"{lv.portal_url}/api/v1/admin/conversions")).text
        user = await y_ops.post(
            f"{lv.portal_url}/api/v1/admin/users",
            json={"email": "second@y.example", "role": "partner", "partner_id": ids["pat"]},
            headers={"x-csrf-token": csrf},
        )
        assert user.status_code in (400, 403)
    assert await db.fetchval("SELECT password_hash FROM users WHERE email = $1", X_PARTNER_EMAIL) == hash_before


async def test_a_new_partner_sets_its_own_password(settings: Settings, db: asyncpg.Connection):
    """An invitation to an address no partner has yet: accepting it makes the partner and its user, and the
    password link goes to that same address."""
    ids = await _x_and_y(db)
    async with live(settings, ingest=False) as lv, lv.client() as y_ops, lv.client() as newcomer:
        csrf = (await _login(y_ops, lv.portal_url, "ops@y.example")).json()["csrf_token"]
        invited = await y_ops.post(
            f"{lv.portal_url}/api/v1/admin/partners",
            json={"name": "Nina New", "email": "Nina@New.example"},
            headers={"x-csrf-token": csrf},
        )
        assert invited.status_code == 201
        assert await db.fetchval("SELECT count(*) FROM partners WHERE email = 'nina@new.example'") == 0
        body = await db.fetchval("SELECT body FROM outbox WHERE to_email = 'nina@new.example'")
        token = re.search(r"/invitation\?token=([A-Za-z0-9._-]+)", body).group(1)
        page = await newcomer.get(f"{lv.portal_url}/invitation?token={token}")
        assert page.status_code == 200 and "Y Shop" in page.text
        accepted = await newcomer.post(f"{lv.portal_url}/api/v1/invitations/accept", json={"token": token})
        assert accepted.status_code == 200, accepted.text
        partner = await db.fetchrow("SELECT id, name FROM partners WHERE email = 'nina@new.example'")
        assert partner["name"] == "Nina New"
        assert (
            await db.fetchval(
                "SELECT status FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2",
                partner["id"],
                ids["y"],
            )
            == "approved"
        )
        reset = await db.fetchval(
            "SELECT body FROM outbox WHERE to_email = 'nina@new.example' ORDER BY id DESC LIMIT 1"
        )
        reset_token = re.search(r"/reset\?token=([A-Za-z0-9._-]+)", reset).group(1)
        done = await newcomer.post(
            f"{lv.portal_url}/api/v1/auth/password-reset/confirm",
            json={"token": reset_token, "password": "nina's own long password"},
        )
        assert done.status_code == 200
        assert (
            await _login(newcomer, lv.portal_url, "nina@new.example", "nina's own long password")
        ).status_code == 200
