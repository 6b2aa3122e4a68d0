"""Broken object level authorisation, tried exhaustively: the list of routes comes from the app itself,
so a new route is covered (or the test demands a case for it). Partner A's credentials (session with
its CSRF token, and an API key) go against every route and method aimed at partner B's objects: every
answer is a 404 and holds no byte of B's data. The same for an operator of another merchant."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from tests.portal.kit import World, api_key, csrf_headers, has, login, portal_client, world

# Routes anyone may call; each with why it is not partner-scoped.
PUBLIC = {
    "/": "redirects to sign-in",
    "/healthz": "liveness",
    "/login": "sign-in form",
    "/m/{slug}": "a merchant's branded sign-in page: public by design",
    "/logout": "ends the caller's own session",
    "/forgot": "asks for a reset link; says the same whether the address exists",
    "/reset": "sets a password with a signed token",
    "/api/v1/openapi.json": "the API description",
    "/api/v1/auth/login": "sign-in",
    "/api/v1/auth/logout": "sign-out",
    "/api/v1/auth/password-reset": "asks for a reset link",
    "/api/v1/auth/password-reset/confirm": "sets a password with a signed token",
    "/api/v1/invitations/accept": "accepts an invitation with the token mailed to the invited address",
    "/invitation": "the page of an invitation mail's link (the same token)",
    "/feeds/prices/{token}.json": "public price feed, found only by an unguessable HMAC id (tested apart)",
    "/api/v1/loyalty/member": "a loyalty member's own view, found only by a signed token (tests/loyalty)",
    "/loyalty/m/{token}": "a loyalty member's own page, found only by a signed token (tests/loyalty)",
}


def partner_targets(w: World) -> dict[str, Any]:
    """Each path parameter -> the id of partner B's object (or B's merchant) it names."""
    return {
        "offer_id": w.ids["private_offer"],
        "link_id": w.ids["b_link"],
        "statement_id": w.ids["b_statement"],
        "postback_id": w.ids["b_postback"],
        "key_id": w.ids["b_key"],
        "partner_id": w.b_partner,
        "merchant_id": w.other_merchant_id,
        "invitation_id": w.ids["m_invitation"],
        "creative_id": w.ids["b_creative"],
        "batch_id": "PB-BBB_SECRET",  # payout batches: operators only
        "coupon_id": w.ids["m_coupon"],
        "event_id": w.ids["m_held"],  # type: ignore[dict-item]
        "customer": w.b_partner,  # loyalty checkout routes: a checkout key of the merchant only
        "redemption_id": 1,
    }


async def _coupon_and_hold(db, w: World, partner: int, offer: int) -> None:
    """A coupon and a held conversion of `partner` on `offer` (merchant M): the BOLA matrix aims at them."""
    w.ids["m_coupon"] = await db.fetchval(
        "INSERT INTO coupons (offer_id, partner_id, code) VALUES ($1, $2, 'BBB_SECRET') RETURNING id", offer, partner
    )
    w.ids["m_held"] = await db.fetchval(  # type: ignore[assignment]
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, status, hold_until,
                                    held_reason, held_until)
           VALUES (gen_random_uuid(), now(), 'purchase', $1, $2, $3, 'BBB_SECRET_held', 'held', now(), 'too_soon',
                   now() + interval '30 days')
           RETURNING event_id::text""",
        w.merchant_id,
        offer,
        partner,
    )


def partner_bodies(w: World) -> dict[tuple[str, str], dict[str, Any]]:
    """Unsafe routes without a path parameter: a body naming B's objects."""
    return {
        ("POST", "/api/v1/partner/links"): {"offer_id": w.ids["private_offer"]},
        ("POST", "/api/v1/partner/prices"): {"merchant_id": w.other_merchant_id, "sku": "BBB-SKU", "retail": "9.99"},
        ("POST", "/api/v1/partner/postbacks"): {"url": "https://a.example/pb"},
        ("POST", "/api/v1/partner/programmes"): {"merchant": "bbb-only"},
        ("POST", "/api/v1/partner/coupons"): {"offer_id": w.ids["private_offer"], "code": "STEAL"},
        ("POST", "/api/v1/keys"): {"name": "a key"},
        ("POST", "/links"): {"offer_id": str(w.ids["private_offer"])},
        ("POST", "/prices"): {"merchant_id": str(w.other_merchant_id), "sku": "BBB-SKU", "retail": "9.99"},
        ("POST", "/postbacks"): {"delete": str(w.ids["b_postback"])},
        ("POST", "/offers"): {"merchant": "bbb-only"},  # applying is acting on its own account
        ("POST", "/profile"): {"name": "Alice"},
        ("POST", "/notifications"): {},
        ("POST", "/api/v1/loyalty/members"): {"customer": "BBB_SECRET_customer"},
        ("POST", "/api/v1/loyalty/referrals"): {"customer": "BBB_SECRET_customer"},
        ("POST", "/api/v1/loyalty/redemptions"): {"customer": "BBB_SECRET_customer", "order_id": "o", "points": 1},
    }


# Bodies aimed at B's objects must be refused as not found; the others are A acting on its own account.
AIMED_AT_B = {
    ("POST", "/api/v1/partner/links"),
    ("POST", "/api/v1/partner/coupons"),
    ("POST", "/api/v1/partner/prices"),
    ("POST", "/links"),
    ("POST", "/prices"),
    ("POST", "/postbacks"),
    ("POST", "/api/v1/loyalty/members"),
    ("POST", "/api/v1/loyalty/referrals"),
    ("POST", "/api/v1/loyalty/redemptions"),
}


def app_routes(client: httpx.AsyncClient) -> list[tuple[str, str]]:
    out = []
    for route in client.app.routes:  # type: ignore[attr-defined]
        if not isinstance(route, Route):
            continue
        for method in sorted((route.methods or set()) - {"HEAD"}):
            out.append((method, route.path))
    return out


def fill(path: str, targets: dict[str, int]) -> str:
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in targets, f"new path parameter {{{name}}} in {path}: add B's object for it to the BOLA matrix"
        return str(targets[name])

    return re.sub(r"{(\w+)}", one, path)


async def _call(
    client: httpx.AsyncClient, method: str, path: str, body: dict | None, csrf: str | None, auth: dict[str, str]
) -> httpx.Response:
    headers = dict(auth)
    if csrf:
        headers.update(csrf_headers(csrf))
    if path.startswith("/api/"):
        return await client.request(method, path, json=body if method != "GET" else None, headers=headers)
    data = dict(body or {})
    if csrf and method != "GET":
        data["csrf_token"] = csrf
    return await client.request(method, path, data=data if method != "GET" else None, headers=headers)


async def _matrix(
    client: httpx.AsyncClient,
    w: World,
    targets: dict[str, int],
    bodies: dict,
    csrf: str | None,
    auth: dict[str, str],
    pages_too: bool,
) -> int:
    tried = 0
    for method, template in app_routes(client):
        if template in PUBLIC:
            continue
        if not template.startswith("/api/") and not pages_too:
            continue  # API keys do not open pages
        path = fill(template, targets)
        has_param = "{" in template
        body = bodies.get((method, template))
        admin = template.startswith(("/api/v1/admin", "/admin"))
        if method != "GET" and not has_param and not admin:
            assert body is not None, f"{method} {template}: add a body aimed at B's objects to the BOLA matrix"
        response = await _call(client, method, path, body, csrf, auth)
        tried += 1
        assert response.status_code < 500, (method, path, response.text)
        assert not has(response, w.marker), f"{method} {path} leaked B's data: {response.text[:300]}"
        if has_param or (method, template) in AIMED_AT_B or admin:
            assert response.status_code == 404, (method, path, response.status_code, response.text[:200])
    return tried


async def _unchanged(db, w: World) -> tuple:
    return (
        await db.fetchval("SELECT count(*) FROM links WHERE offer_id = $1", w.ids["private_offer"]),
        await db.fetchval("SELECT count(*) FROM prices WHERE sku = 'BBB-SKU'"),
        await db.fetchval("SELECT status FROM partner_postbacks WHERE id = $1", w.ids["b_postback"]),
        await db.fetchval("SELECT revoked_at FROM api_keys WHERE id = $1", w.ids["b_key"]),
        await db.fetchval("SELECT status FROM statements WHERE id = $1", w.ids["b_statement"]),
        await db.fetchval("SELECT count(*) FROM audit_log"),
    )


async def _invitation(db, merchant_id: int) -> int:
    return await db.fetchval(
        """INSERT INTO partner_invitations (merchant_id, email, name, token_sha256, invited_by, expires_at)
           VALUES ($1, 'bbb_secret-invited@p.example', 'BBB_SECRET invitee', '\\x01', 'ops', now() + interval '1 day')
           RETURNING id""",
        merchant_id,
    )


async def test_partner_a_never_reaches_partner_b(db, settings):
    w = await world(db)
    w.ids["m_invitation"] = await _invitation(db, w.merchant_id)
    await _coupon_and_hold(db, w, w.b_partner, w.ids["private_offer"])
    before = await _unchanged(db, w)
    async with portal_client(settings, CLICKMINT_API_PER_MINUTE="100000") as client:
        csrf = await login(client, "alice@p.example")
        by_session = await _matrix(client, w, partner_targets(w), partner_bodies(w), csrf, {}, pages_too=True)
    key = await api_key(db, w.a_user)
    async with portal_client(settings, CLICKMINT_API_PER_MINUTE="100000") as client:
        by_key = await _matrix(
            client, w, partner_targets(w), partner_bodies(w), None, {"authorization": f"Bearer {key}"}, False
        )
    assert by_session > 60 and by_key > 45
    assert await _unchanged(db, w) == before


def operator_targets(w: World) -> dict[str, Any]:
    """Objects of merchant M, aimed at by the operator of the other merchant."""
    return {
        "offer_id": w.ids["public_offer"],
        "link_id": w.ids["a_link"],
        "statement_id": w.ids["b_statement"],
        "postback_id": w.ids["b_postback"],
        "key_id": w.ids["b_key"],
        "partner_id": w.a_partner,
        "merchant_id": w.merchant_id,
        "invitation_id": w.ids["m_invitation"],
        "creative_id": w.ids["b_creative"],  # only a partner page names one: an operator gets 404 whatever the id
        "batch_id": "PB-M",
        "coupon_id": w.ids["m_coupon"],
        "event_id": w.ids["m_held"],  # type: ignore[dict-item]
        "customer": w.a_partner,
        "redemption_id": 1,
    }


async def test_operator_of_another_merchant_never_reaches_merchant_m(db, settings):
    w = await world(db)
    w.ids["m_invitation"] = await _invitation(db, w.merchant_id)
    await db.execute(
        """INSERT INTO payout_batches (id, merchant_id, period_start, format, schema_version, currency, count,
                                       total_minor, file_sealed, file_sha256, created_by)
           VALUES ('PB-M', $1, '2026-11-01', 'paypal', 'paypal-payouts-csv', 'USD', 1, 100, '\\x00', 'x', 'ops')""",
        w.merchant_id,
    )
    await db.execute("UPDATE offers SET name = 'BBB_SECRET public' WHERE id = $1", w.ids["public_offer"])
    await db.execute("UPDATE partners SET name = 'BBB_SECRET Alice' WHERE id = $1", w.a_partner)
    await db.execute("UPDATE links SET code = 'BBB_SECRET_alice' WHERE id = $1", w.ids["a_link"])
    # The other operator's own merchant carries the marker in its name; rename so only M's data has it.
    await db.execute("UPDATE merchants SET name = 'Other shop' WHERE id = $1", w.other_merchant_id)
    await db.execute("UPDATE offers SET name = 'Elsewhere' WHERE id = $1", w.ids["b_only_offer"])
    await db.execute("UPDATE products SET name = 'Product' WHERE sku = 'BBB-SKU'")
    await db.execute("UPDATE creatives SET name = 'Banner'")
    await db.execute("UPDATE partners SET name = 'Bob', email = 'bob@p.example' WHERE id = $1", w.b_partner)
    await db.execute("UPDATE users SET email = 'bob@p.example' WHERE id = $1", w.b_user)
    await _coupon_and_hold(db, w, w.a_partner, w.ids["public_offer"])
    bodies = {
        ("POST", "/api/v1/admin/coupons"): {"offer_id": w.ids["public_offer"], "partner_id": w.a_partner, "code": "X"},
        ("POST", "/admin/holds"): {"event_id": w.ids["m_held"], "decision": "approve", "reason": "x"},
        ("POST", "/api/v1/admin/offers"): {
            "merchant_id": w.merchant_id,
            "name": "x",
            "destination_url": "https://x.example/",
        },
        ("POST", "/api/v1/admin/partners"): {"merchant_id": w.merchant_id, "name": "x", "email": "x@x.example"},
        ("POST", "/api/v1/admin/links"): {"offer_id": w.ids["public_offer"], "partner_id": w.a_partner},
        ("POST", "/api/v1/admin/creatives"): {
            "offer_id": w.ids["public_offer"],
            "name": "b",
            "image_base64": "R0lGODlhAQABAAAAACw=",
        },
        ("POST", "/api/v1/admin/products"): {
            "merchant_id": w.merchant_id,
            "sku": "S",
            "name": "n",
            "wholesale": "1.00",
            "currency": "USD",
        },
        ("POST", "/api/v1/admin/rates"): {"merchant_id": w.merchant_id, "base": "USD", "quote": "EUR", "rate": "0.9"},
        ("POST", "/api/v1/admin/users"): {"email": "u@x.example", "role": "operator", "merchant_id": w.merchant_id},
        ("POST", "/api/v1/admin/merchants"): {"slug": "new-one", "name": "New"},
        ("POST", "/api/v1/admin/payout-batches"): {"merchant_id": w.merchant_id, "period": "2026-11", "format": "sepa"},
        ("POST", "/api/v1/keys"): {"name": "k"},
        ("PUT", "/api/v1/admin/offers/{offer_id}/partner-plan"): {"partner_id": w.a_partner, "fee_plan": {}},
        ("PATCH", "/api/v1/admin/offers/{offer_id}"): {"name": "taken"},
        ("PATCH", "/api/v1/admin/merchants/{merchant_id}"): {"name": "taken"},
        ("POST", "/api/v1/admin/partners/{partner_id}/status"): {"merchant_id": w.merchant_id, "status": "suspended"},
        ("POST", "/api/v1/admin/links/{link_id}/status"): {"status": "paused"},
        ("POST", "/admin/offers"): {
            "merchant_id": str(w.merchant_id),
            "name": "x",
            "destination_url": "https://x.example/",
        },
        ("POST", "/admin/partners"): {
            "partner_id": str(w.a_partner),
            "merchant_id": str(w.merchant_id),
            "status": "suspended",
        },
        ("POST", "/admin/statements"): {"statement_id": str(w.ids["b_statement"]), "action": "close"},
        ("POST", "/admin/payouts"): {"do": "paid", "batch": "PB-M"},
        ("POST", "/admin/links"): {"offer_id": str(w.ids["public_offer"]), "partner_id": str(w.a_partner)},
        ("POST", "/admin/creatives"): {"offer_id": str(w.ids["public_offer"]), "name": "b"},
        ("POST", "/admin/products"): {
            "merchant_id": str(w.merchant_id),
            "sku": "S",
            "name": "n",
            "wholesale": "1.00",
            "currency": "USD",
        },
        ("POST", "/admin/rates"): {"merchant_id": str(w.merchant_id), "base": "USD", "quote": "EUR", "rate": "0.9"},
        ("POST", "/admin/account"): {
            "form": "merchant_language",
            "merchant_id": str(w.merchant_id),
            "default_locale": "de",
        },
        ("PUT", "/api/v1/admin/loyalty/programme"): {"merchant_id": w.merchant_id, "enabled": True},
        ("POST", "/admin/loyalty"): {"merchant_id": str(w.merchant_id), "customer": "x", "points": "5", "reason": "x"},
        ("POST", "/api/v1/admin/loyalty/adjustments"): {
            "merchant_id": w.merchant_id,
            "customer": "BBB_SECRET_customer",
            "points": 5,
            "reason": "x",
        },
    }
    before = await _unchanged(db, w)
    offers_before = await db.fetchval("SELECT count(*) FROM offers")
    async with portal_client(settings, CLICKMINT_API_PER_MINUTE="100000") as client:
        csrf = await login(client, "ops@bbb.example")
        tried = 0
        for method, template in app_routes(client):
            if template in PUBLIC or not (template.startswith(("/api/v1/admin", "/admin")) or "{" in template):
                continue
            path = fill(template, operator_targets(w))
            body = bodies.get((method, template))
            if method != "GET" and "{" not in template:
                assert body is not None, f"{method} {template}: add a body aimed at merchant M to the matrix"
            response = await _call(client, method, path, body, csrf, {})
            tried += 1
            assert response.status_code < 500, (method, path, response.text)
            assert not has(response, "BBB_SECRET"), f"{method} {path} leaked M's data: {response.text[:300]}"
            aimed = "{" in template or (method != "GET" and (method, template) != ("POST", "/api/v1/keys"))
            if aimed and template.startswith(("/api/v1/admin", "/admin")):
                assert response.status_code in (403, 404), (method, path, response.status_code, response.text[:200])
    assert tried > 30
    assert await _unchanged(db, w) == before
    assert await db.fetchval("SELECT count(*) FROM offers") == offers_before


@pytest.mark.parametrize("token", ["1.2.AAAAAAAAAAAAAAAA", "x", "1.2", "", "../../etc/passwd"])
async def test_price_feed_needs_its_unguessable_id(db, settings, token):
    w = await world(db)
    async with portal_client(settings) as client:
        response = await client.get(f"/feeds/prices/{token}.json")
        assert response.status_code == 404
        assert not has(response, w.marker)


# -- every id in every write body, generated from the endpoint registry the routes are made from --------------

GIF_B64 = "R0lGODlhAQABAAAAACw="


def valid_bodies(own: dict[str, int]) -> dict[tuple[str, str], dict[str, Any]]:
    """For each write whose body names objects: a body the caller may send, naming only its own objects."""
    return {
        ("POST", "/api/v1/admin/offers"): {
            "merchant_id": own["merchant"],
            "name": "x",
            "destination_url": "https://x.example/",
        },
        ("PUT", "/api/v1/admin/offers/{offer_id}/partner-plan"): {"partner_id": own["partner"], "fee_plan": {}},
        ("POST", "/api/v1/admin/partners"): {"merchant_id": own["merchant"], "name": "x", "email": "x@x.example"},
        ("POST", "/api/v1/admin/partners/{partner_id}/status"): {"merchant_id": own["merchant"], "status": "approved"},
        ("POST", "/api/v1/admin/links"): {
            "offer_id": own["offer"],
            "partner_id": own["partner"],
            "creative_id": own["creative"],
        },
        ("POST", "/api/v1/admin/creatives"): {"offer_id": own["offer"], "name": "b", "image_base64": GIF_B64},
        ("POST", "/api/v1/admin/products"): {
            "merchant_id": own["merchant"],
            "sku": "S",
            "name": "n",
            "wholesale": "1.00",
            "currency": "USD",
        },
        ("POST", "/api/v1/admin/rates"): {"merchant_id": own["merchant"], "base": "USD", "quote": "EUR", "rate": "0.9"},
        ("POST", "/api/v1/admin/users"): {"email": "u@x.example", "role": "operator", "merchant_id": own["merchant"]},
        ("POST", "/api/v1/admin/payout-batches"): {
            "merchant_id": own["merchant"],
            "period": "2026-11",
            "format": "sepa",
        },
        ("POST", "/api/v1/partner/links"): {"offer_id": own["offer"], "creative_id": own["creative"]},
        ("POST", "/api/v1/partner/prices"): {"merchant_id": own["merchant"], "sku": "M-SKU", "retail": "9.99"},
        ("POST", "/api/v1/admin/coupons"): {"offer_id": own["offer"], "partner_id": own["partner"], "code": "OWN1"},
        ("PUT", "/api/v1/admin/partners/{partner_id}/customer-ref"): {
            "merchant_id": own["merchant"],
            "customer_ref": "c",
        },
        ("POST", "/api/v1/partner/coupons"): {"offer_id": own["offer"], "code": "MINE1"},
        ("PUT", "/api/v1/admin/loyalty/programme"): {"merchant_id": own["merchant"], "enabled": True},
        ("POST", "/api/v1/admin/loyalty/adjustments"): {
            "merchant_id": own["merchant"],
            "customer": "c-1",
            "points": 5,
            "reason": "x",
        },
    }


async def _digest(db) -> dict[str, str]:
    """A hash of every table's rows (but the caller's own session and key use): what a refused write must not move."""
    tables = [
        r["tablename"]
        for r in await db.fetch(
            """SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename NOT LIKE 'events_%'
               AND tablename NOT IN ('sessions', 'api_keys')"""
        )
    ]
    return {
        t: await db.fetchval(f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x")
        for t in tables
    }


def test_every_id_in_every_body_is_a_checked_reference():
    """A body field that names an object (`*_id`) must be declared a reference, or tenancy would not check it."""
    from portal.app import ENDPOINTS
    from portal.tenancy import references

    for ep in ENDPOINTS:
        if ep.body is None:
            continue
        refs = references(ep.body)
        for name in ep.body:
            if name.endswith("_id"):
                assert name in refs, f"{ep.method} {ep.path}: body field {name} is an id but not validate.ref(kind)"


async def _own_and_foreign(db, w: World) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """(own, foreign) ids per kind, for the other merchant's operator and for partner A."""
    m_creative = await db.fetchval(
        """INSERT INTO creatives (offer_id, name, content_type, width, height, body, sha256)
           VALUES ($1, 'M banner', 'image/png', 1, 1, '\\x00', 'm') RETURNING id""",
        w.ids["public_offer"],
    )
    await db.execute("INSERT INTO products (merchant_id, sku, name) VALUES ($1, 'M-SKU', 'M product')", w.merchant_id)
    await db.execute(
        """INSERT INTO prices (merchant_id, sku, kind, amount_minor, currency)
           VALUES ($1, 'M-SKU', 'wholesale', 100, 'USD')""",
        w.merchant_id,
    )
    operator_own = {
        "merchant": w.other_merchant_id,
        "offer": w.ids["b_only_offer"],
        "partner": w.b_partner,  # B is in both programmes
        "creative": w.ids["b_creative"],
    }
    operator_foreign = {
        "merchant": w.merchant_id,
        "offer": w.ids["public_offer"],
        "partner": w.a_partner,
        "creative": m_creative,
    }
    partner_own = {
        "merchant": w.merchant_id,
        "offer": w.ids["public_offer"],
        "creative": m_creative,
        "partner": w.a_partner,
    }
    partner_foreign = {
        "merchant": w.other_merchant_id,
        "offer": w.ids["b_only_offer"],
        "creative": w.ids["b_creative"],
        "partner": w.b_partner,
    }
    return {"operator": operator_own, "partner": partner_own}, {
        "operator": operator_foreign,
        "partner": partner_foreign,
    }


@pytest.mark.parametrize(("role", "email"), [("operator", "ops@bbb.example"), ("partner", "alice@p.example")])
async def test_every_reference_in_every_write_is_checked_against_the_callers_tenant(db, settings, role, email):
    """Each write's valid body, with one referenced id at a time swapped for another tenant's (and for one that
    does not exist): 404 not_found, the same answer for both, and not a row of any table changed. Then the valid
    body itself is accepted, so the refusal came from the foreign id alone."""
    from portal.app import ENDPOINTS
    from portal.tenancy import references

    w = await world(db)
    owns, foreign = await _own_and_foreign(db, w)
    own, theirs = owns[role], foreign[role]
    bodies = valid_bodies(own)
    writes = [ep for ep in ENDPOINTS if ep.body is not None and ep.role in (role, "any") and references(ep.body)]
    tried = 0
    async with portal_client(settings, CLICKMINT_API_PER_MINUTE="100000") as client:
        csrf = await login(client, email)
        for ep in writes:
            assert (ep.method, ep.path) in bodies, f"{ep.method} {ep.path}: add a valid body to valid_bodies()"
            path = ep.path.replace("{offer_id}", str(own["offer"])).replace("{partner_id}", str(own["partner"]))
            for name, kind in references(ep.body).items():
                answers = []
                for swapped in (theirs[kind], 999_999):
                    before = await _digest(db)
                    body = {**bodies[(ep.method, ep.path)], name: swapped}
                    response = await client.request(ep.method, path, json=body, headers=csrf_headers(csrf))
                    assert response.status_code == 404, (ep.method, ep.path, name, swapped, response.text)
                    assert response.json()["error"] == "not_found"
                    assert await _digest(db) == before, f"{ep.method} {ep.path} with a foreign {name} changed data"
                    answers.append(response.json())
                    tried += 1
                assert answers[0] == answers[1], f"{ep.method} {ep.path}: a foreign {name} answers unlike a missing one"
            accepted = await client.request(
                ep.method, path, json=bodies[(ep.method, ep.path)], headers=csrf_headers(csrf)
            )
            assert accepted.status_code < 300, (ep.method, ep.path, accepted.text)
    assert tried >= (22 if role == "operator" else 6)


async def test_a_statement_detail_names_only_lines_of_that_statement(db, settings):
    """The detail export's `line` query names a ledger line: on the caller's own statement, B's line is not
    found there (an empty export), never B's events."""
    w = await world(db)
    own = await db.fetchval(
        """INSERT INTO statements (number, merchant_id, partner_id, currency, period_start, period_end)
           VALUES ('A-1', $1, $2, 'USD', date_trunc('month', now())::date,
                   (date_trunc('month', now()) + interval '1 month')::date) RETURNING id""",
        w.merchant_id,
        w.a_partner,
    )
    b_line = await db.fetchval("SELECT id FROM ledger_lines WHERE statement_id = $1", w.ids["b_statement"])
    async with portal_client(settings) as client:
        await login(client, "alice@p.example")
        mine = await client.get(f"/api/v1/partner/statements/{own}/detail", params={"line": b_line})
    async with portal_client(settings) as client:
        await login(client, "ops@shop-m.example")
        ops = await client.get(f"/api/v1/admin/statements/{own}/detail", params={"line": b_line})
    for response in (mine, ops):
        assert response.status_code == 200
        assert not has(response, w.marker)
        assert response.text.splitlines() == ["Line,Reference,Kind,Date (UTC),Event"]
