"""Login CSRF through the API twin of the sign-in form, tried on the real portal: a page on another site posts
a form to /api/v1/auth/login with the attacker's credentials (the victim's browser then works in the attacker's
account) or to /api/v1/auth/logout. The form pages were protected; now their API twins need the JSON content
type and a same-origin request too, and a script without a browser still signs in."""

from __future__ import annotations

import asyncpg
import pytest

from kernel.settings import Settings
from tests.portal.kit import PASSWORD, world
from tests.security.live import live

EVIL = "https://evil.example"


@pytest.mark.parametrize(
    ("headers", "body", "code"),
    [
        ({"origin": EVIL, "content-type": "application/x-www-form-urlencoded"}, b"", "unsupported_media_type"),
        ({"origin": EVIL, "content-type": "text/plain"}, b"", "unsupported_media_type"),
        ({"content-type": "multipart/form-data; boundary=x"}, b"", "unsupported_media_type"),
        ({"origin": EVIL, "content-type": "application/json"}, None, "cross_origin"),
        ({"sec-fetch-site": "cross-site", "content-type": "application/json"}, None, "cross_origin"),
        ({"origin": "null", "content-type": "application/json"}, None, "cross_origin"),
    ],
)
async def test_a_cross_site_sign_in_is_refused(
    settings: Settings, db: asyncpg.Connection, headers: dict[str, str], body: bytes | None, code: str
) -> None:
    await world(db)
    credentials = {"email": "alice@p.example", "password": PASSWORD}
    async with live(settings, ingest=False) as lv, lv.client() as browser:
        if body is None:
            import orjson

            content = orjson.dumps(credentials)
        elif headers["content-type"].startswith("multipart/"):
            content = b'--x\r\nContent-Disposition: form-data; name="email"\r\n\r\nalice@p.example\r\n--x--\r\n'
        else:
            content = f"email=alice%40p.example&password={PASSWORD.replace(' ', '+')}".encode()
        response = await browser.post(f"{lv.portal_url}/api/v1/auth/login", content=content, headers=headers)
        assert response.status_code in (403, 415), response.text
        assert response.json()["error"] == code
        assert "cm_session" not in response.headers.get("set-cookie", "")
    assert await db.fetchval("SELECT count(*) FROM sessions") == 0


async def test_a_cross_site_sign_out_is_refused_and_scripts_still_work(settings: Settings, db: asyncpg.Connection):
    await world(db)
    async with live(settings, ingest=False) as lv, lv.client() as browser:
        script = await browser.post(
            f"{lv.portal_url}/api/v1/auth/login", json={"email": "alice@p.example", "password": PASSWORD}
        )
        assert script.status_code == 200  # no Origin: a script, not a browser on another site
        same_site = await browser.post(
            f"{lv.portal_url}/api/v1/auth/login",
            json={"email": "alice@p.example", "password": PASSWORD},
            headers={"origin": lv.portal_url, "sec-fetch-site": "same-origin"},
        )
        assert same_site.status_code == 200
        forged = await browser.post(
            f"{lv.portal_url}/api/v1/auth/logout",
            content=b"",
            headers={"origin": EVIL, "content-type": "application/x-www-form-urlencoded"},
        )
        assert forged.status_code == 415
        assert (await browser.get(f"{lv.portal_url}/api/v1/me")).status_code == 200
        cross = await browser.post(f"{lv.portal_url}/api/v1/auth/logout", json={}, headers={"origin": EVIL})
        assert cross.status_code == 403 and cross.json()["error"] == "cross_origin"
        assert (await browser.get(f"{lv.portal_url}/api/v1/me")).status_code == 200
        mine = await browser.post(f"{lv.portal_url}/api/v1/auth/logout", json={}, headers={"origin": lv.portal_url})
        assert mine.status_code == 200
        assert (await browser.get(f"{lv.portal_url}/api/v1/me")).status_code == 401
