"""Server-to-server postbacks (HMAC and token), TUNE's /aff_lsr and the /a/{offer} pixel: accepted or refused,
and a refusal writes nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import asyncpg
import httpx
import orjson
import pytest

from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.http.tracker_client import Req, assert_refused, flip, forge, running, send, signed_headers
from tracker.app import signer_for
from tracker.clickids import ClickIdSigner
from tracker.endpoints import GIF

WINDOW_S = 3600
DROP = object()  # a field left out of the request
TUNE_TOKEN = "tune-token-of-the-offer-0123456789"


@dataclass
class Shop:
    prog: Programme
    other: Programme  # another merchant's offer and link
    secret: str
    click_id: str  # a fresh, valid click id of prog's link
    other_click_id: str
    signer: ClickIdSigner = field(repr=False)
    tune_token: str = TUNE_TOKEN  # TUNE's own token: the offer's postbacks are HMAC-signed


@pytest.fixture
async def shop(settings: Settings, db: asyncpg.Connection) -> Shop:
    prog = await programme(db, window_s=WINDOW_S)
    other = await programme(db, window_s=WINDOW_S)
    secret = await db.fetchval(
        "UPDATE offers SET tune_token = $2 WHERE id = $1 RETURNING postback_secret", prog.offer_id, TUNE_TOKEN
    )
    signer = signer_for(settings.secret_key)
    now = int(time.time())
    return Shop(prog, other, secret, signer.issue(prog.link_id, now), signer.issue(other.link_id, now), signer)


def _fields(shop: Shop, changes: dict[str, Any]) -> dict[str, Any]:
    base = {"offer_id": shop.prog.offer_id, "click_id": shop.click_id, "order_id": "ord-1", "amount": "10.00"}
    return {k: v for k, v in {**base, **changes}.items() if v is not DROP}


def as_json(shop: Shop, secret: str | None = None, skew: int = 0, **changes: Any) -> Req:
    body = orjson.dumps(_fields(shop, changes))
    headers = {"content-type": "application/json", **signed_headers(secret or shop.secret, body, skew)}
    return Req("POST", "/postback", body, headers)


def raw_body(shop: Shop, body: bytes, content_type: str = "application/x-www-form-urlencoded") -> Req:
    return Req("POST", "/postback", body, {"content-type": content_type, **signed_headers(shop.secret, body)})


def as_get(shop: Shop, **changes: Any) -> Req:
    query = urlencode(_fields(shop, changes))
    return Req("GET", f"/postback?{query}", headers=signed_headers(shop.secret, query.encode()))


def _old(shop: Shop) -> str:
    return shop.signer.issue(shop.prog.link_id, int(time.time()) - WINDOW_S - 60)


def _unsigned(s: Shop) -> Req:
    return Req("POST", "/postback", orjson.dumps(_fields(s, {})), {"content-type": "application/json"})


def _signed_for_another_body(s: Shop) -> Req:
    headers = {"content-type": "application/json", **signed_headers(s.secret, orjson.dumps(_fields(s, {})))}
    return Req("POST", "/postback", orjson.dumps(_fields(s, {"amount": "99.00"})), headers)


def _bad_timestamp_unknown_offer(s: Shop) -> Req:
    headers = {"content-type": "application/json", "x-clickmint-timestamp": "soon", "x-clickmint-signature": "0"}
    return Req("POST", "/postback", b"{}", headers)


def _form_not_utf8(s: Shop) -> Req:
    return raw_body(s, b"offer_id=%d&click_id=%s&order_id=\xff\xfe" % (s.prog.offer_id, s.click_id.encode()))


def _token_only(s: Shop) -> Req:
    body = orjson.dumps(_fields(s, {"token": s.secret}))
    return Req("POST", "/postback", body, {"content-type": "application/json", "x-clickmint-token": s.secret})


def _future(s: Shop) -> str:
    return s.signer.issue(s.prog.link_id, int(time.time()) + 3600)


JSON = "application/json"
# (test id, status, error code, request)
REFUSALS: list[tuple[str, int, str, Callable[[Shop], Req]]] = [
    ("missing_signature", 401, "missing_signature", _unsigned),
    ("token_for_hmac_offer", 401, "missing_signature", _token_only),
    ("bad_signature", 401, "bad_signature", lambda s: as_json(s, secret="not-the-secret")),
    ("signature_of_another_body", 401, "bad_signature", _signed_for_another_body),
    ("stale_timestamp", 401, "stale_timestamp", lambda s: as_json(s, skew=-400)),
    ("future_timestamp", 401, "stale_timestamp", lambda s: as_json(s, skew=400)),
    ("unknown_offer_before_auth", 404, "unknown_offer", _bad_timestamp_unknown_offer),
    ("wrong_offer", 400, "click_id_wrong_offer", lambda s: as_json(s, click_id=s.other_click_id)),
    ("bit_flip", 400, "click_id_bad_signature", lambda s: as_json(s, click_id=flip(s.click_id))),
    ("forged", 400, "click_id_bad_signature", lambda s: as_json(s, click_id=forge(s.prog.link_id))),
    ("malformed", 400, "click_id_malformed", lambda s: as_json(s, click_id="abc")),
    ("expired", 400, "click_id_expired", lambda s: as_json(s, click_id=_old(s))),
    ("from_future", 400, "click_id_from_future", lambda s: as_json(s, click_id=_future(s))),
    ("missing_click_id", 400, "missing_click_id", lambda s: as_json(s, click_id=DROP)),
    ("negative", 400, "negative_amount", lambda s: as_json(s, amount="-5.00")),
    ("nan", 400, "invalid_amount", lambda s: as_json(s, amount="NaN")),
    ("exponent", 400, "invalid_amount", lambda s: as_json(s, amount="1e3")),
    ("json_number", 400, "invalid_amount", lambda s: as_json(s, amount=1000)),
    ("json_float", 400, "invalid_amount", lambda s: as_json(s, amount=10.5)),
    ("too_many_decimals", 400, "too_many_decimals", lambda s: as_json(s, amount="1.234")),
    ("unknown_currency", 400, "unknown_currency", lambda s: as_json(s, currency="XYZ")),
    ("long_order_id", 400, "field_too_long", lambda s: as_json(s, order_id="o" * 256)),
    ("long_click_id", 400, "field_too_long", lambda s: as_json(s, click_id="c" * 256)),
    ("control_chars", 400, "invalid_order_id", lambda s: as_json(s, order_id="a\r\nb")),
    ("bad_type", 400, "invalid_type", lambda s: as_json(s, type="sale")),
    ("purchase_without_order", 400, "missing_order_id", lambda s: as_json(s, order_id=DROP)),
    ("no_amount", 400, "missing_amount", lambda s: as_json(s, type="purchase", amount=DROP)),
    ("bad_action", 400, "invalid_action", lambda s: as_json(s, type="action", amount=DROP, action="Sign Up!")),
    ("bad_qty", 400, "invalid_items", lambda s: as_json(s, items=[{"sku": "a", "qty": 0, "price": "1.00"}])),
    ("numeric_price", 400, "invalid_amount", lambda s: as_json(s, items=[{"sku": "a", "qty": 1, "price": 1}])),
    ("unknown_offer", 404, "unknown_offer", lambda s: as_json(s, offer_id=999_999)),
    ("non_numeric_offer", 404, "unknown_offer", lambda s: as_json(s, offer_id="12abc")),
    ("bad_json", 400, "invalid_json", lambda s: raw_body(s, b'{"offer_id": 1,', JSON)),
    ("json_array", 400, "invalid_json", lambda s: raw_body(s, b"[1, 2]", JSON)),
    ("json_nan", 400, "invalid_json", lambda s: raw_body(s, b"NaN", JSON)),
    ("form_not_utf8", 400, "invalid_utf8", _form_not_utf8),
    ("form_escape_not_utf8", 400, "invalid_utf8", lambda s: raw_body(s, b"offer_id=1&order_id=%ff")),
    ("too_many_fields", 400, "too_many_fields", lambda s: raw_body(s, b"&".join(b"f%d=1" % i for i in range(70)))),
    ("body_over_64k", 413, "body_too_large", lambda s: as_json(s, note="x" * (64 * 1024))),
    ("get_negative", 400, "negative_amount", lambda s: as_get(s, amount="-1")),
    (
        "get_bad_signature",
        401,
        "bad_signature",
        lambda s: Req("GET", as_get(s).url, headers=signed_headers(s.secret, b"x")),
    ),
]


@pytest.mark.parametrize(("status", "code", "build"), [pytest.param(*case[1:], id=case[0]) for case in REFUSALS])
async def test_postback_refusals_write_nothing(
    settings: Settings, shop: Shop, status: int, code: str, build: Callable[[Shop], Req]
) -> None:
    async with running(settings) as t:
        await assert_refused(t, t.http, build(shop), status, code)
        assert await t.stream_keys() == []


@pytest.mark.parametrize("shape", ["json", "form", "get"])
async def test_signed_postback_is_accepted(settings: Settings, shop: Shop, shape: str) -> None:
    items = [{"sku": "tee", "qty": 2, "price": "19.99"}]
    if shape == "json":
        req = as_json(shop, amount="129.99", currency="usd", items=items, customer_id="cust-9")
    elif shape == "form":
        body = urlencode(
            _fields(shop, {"amount": "129.99", "items": orjson.dumps(items).decode(), "customer_id": "cust-9"})
        ).encode()
        req = raw_body(shop, body)
    else:
        req = as_get(shop, amount="129.99", items=orjson.dumps(items).decode(), customer_id="cust-9")
    async with running(settings) as t:
        response = await send(t.http, req)
        [event] = await t.shard_events(t.shard(shop.prog.code))
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "accepted", "event_id": event["id"], "type": "purchase"}
    keys = ("type", "link", "partner", "offer", "click_id", "order_id", "amount", "currency")
    assert {k: event[k] for k in keys} == {
        "type": "purchase",
        "link": shop.prog.link_id,
        "partner": shop.prog.partner_id,
        "offer": shop.prog.offer_id,
        "click_id": shop.click_id,
        "order_id": "ord-1",
        "amount": 12999,
        "currency": "USD",
    }
    assert event["items"] == [{"sku": "tee", "qty": 2, "price": 1999}]
    assert (event["customer"], event["via"], event["ip"]) == ("cust-9", "postback", "203.0.113.0")
    assert "refusal" not in event


async def test_click_then_postback_end_to_end(settings: Settings, shop: Shop) -> None:
    async with running(settings) as t:
        click = await t.http.get(f"/c/{shop.prog.code}")
        click_id = click.headers["location"].split("cid=")[1].split("&")[0]
        response = await send(t.http, as_json(shop, click_id=click_id, type="action", amount=DROP, action="Signup"))
        click_event, action = await t.shard_events(t.shard(shop.prog.code))
    assert response.status_code == 200 and response.json()["type"] == "action"
    assert click_event["click_id"] == action["click_id"] == click_id
    assert (action["action"], action["order_id"], "amount" in action) == ("signup", "ord-1", False)


async def test_replayed_signed_postback_is_refused(settings: Settings, shop: Shop) -> None:
    req = as_json(shop)
    async with running(settings) as t:
        assert (await send(t.http, req)).status_code == 200
        await assert_refused(t, t.http, req, 409, "replayed")
        assert (await t.written())[0] == 1


async def test_refused_signed_postback_does_not_burn_its_nonce(settings: Settings, shop: Shop) -> None:
    # A refusal writes nothing: sending the same request again gets the same answer, not "replayed".
    req = as_json(shop, amount="-1.00")
    async with running(settings) as t:
        await assert_refused(t, t.http, req, 400, "negative_amount")
        await assert_refused(t, t.http, req, 400, "negative_amount")


async def _token_mode(db: asyncpg.Connection, shop: Shop, allowlist: list[str]) -> None:
    await db.execute(
        "UPDATE offers SET postback_security = 'token', postback_ip_allowlist = $2::cidr[] WHERE id = $1",
        shop.prog.offer_id,
        allowlist,
    )


@pytest.mark.parametrize(
    "case",
    [
        ("198.51.100.9", "secret", None, 200, None),
        ("198.51.100.9", None, None, 401, "missing_token"),
        ("198.51.100.9", "wrong", None, 401, "bad_token"),
        ("198.51.100.9", "secret-with-suffix", None, 401, "bad_token"),
        ("203.0.113.77", "secret", None, 403, "ip_not_allowed"),
        ("203.0.113.77", "secret", "198.51.100.9", 403, "ip_not_allowed"),  # X-Forwarded-For is not trusted here
    ],
)
async def test_token_postback(settings: Settings, db: asyncpg.Connection, shop: Shop, case: tuple[Any, ...]) -> None:
    ip, token, forwarded, status, code = case
    await _token_mode(db, shop, ["198.51.100.0/24"])
    real = {"secret": shop.secret, "secret-with-suffix": shop.secret + "x"}.get(token or "", token)
    req = Req("GET", "/postback?" + urlencode(_fields(shop, {} if real is None else {"token": real})))
    if forwarded:
        req.headers["x-forwarded-for"] = forwarded
    async with running(settings) as t, t.client(ip=ip) as http:
        if code is not None:
            await assert_refused(t, http, req, status, code)
        else:
            response = await send(http, req)
            assert response.status_code == 200 and response.json()["status"] == "accepted"
            [event] = await t.events()
            assert event["via"] == "postback" and event["ip"] == "198.51.100.0"


async def test_token_in_header_and_trusted_proxy(settings: Settings, db: asyncpg.Connection, shop: Shop) -> None:
    await _token_mode(db, shop, ["198.51.100.0/24"])
    body = orjson.dumps(_fields(shop, {}))
    headers = {"content-type": "application/json", "x-clickmint-token": shop.secret, "x-forwarded-for": "198.51.100.9"}
    async with running(settings, {"CLICKMINT_TRUST_FORWARDED": "true"}) as t:
        response = await send(t.http, Req("POST", "/postback", body, headers))
        assert response.status_code == 200, response.text
        [event] = await t.events()
    assert (event["via"], event["ip"], event["click_id"]) == ("postback", "198.51.100.0", shop.click_id)


# --- TUNE /aff_lsr ------------------------------------------------------------------------------------------


def _tune(shop: Shop, **changes: Any) -> str:
    base = {
        "offer_id": shop.prog.offer_id,
        "transaction_id": shop.click_id,
        "adv_sub": "ord-7",
        "amount": "42.50",
        "security_token": shop.tune_token,
    }
    return "/aff_lsr?" + urlencode({k: v for k, v in {**base, **changes}.items() if v is not DROP})


async def test_tune_postback_is_accepted(settings: Settings, shop: Shop) -> None:
    async with running(settings) as t:
        sale = await t.http.get(_tune(shop))
        lead = await t.http.get(_tune(shop, amount=DROP, adv_sub=DROP, goal_name="newsletter"))
        purchase, action = await t.shard_events(t.shard(shop.prog.code))
    assert (sale.status_code, sale.text) == (200, "success=true;")
    assert (lead.status_code, lead.text) == (200, "success=true;")
    assert (purchase["type"], purchase["order_id"], purchase["amount"]) == ("purchase", "ord-7", 4250)
    assert (purchase["via"], purchase["click_id"], purchase["partner"]) == ("tune", shop.click_id, shop.prog.partner_id)
    assert (action["type"], action["action"], action["via"]) == ("action", "newsletter", "tune")


async def test_tune_finds_the_offer_from_the_transaction_id(settings: Settings, shop: Shop) -> None:
    # TUNE templates often leave offer_id out: the signed click id names its link, hence its offer. The
    # default action name is the pixel's ("lead").
    async with running(settings) as t:
        lead = await t.http.get(_tune(shop, offer_id=DROP, amount=DROP, adv_sub=DROP))
        sale = await t.http.get(_tune(shop, offer_id=DROP))
        action, purchase = await t.shard_events(t.shard(shop.prog.code))
    assert (lead.text, sale.text) == ("success=true;", "success=true;")
    assert (action["type"], action["action"], action["offer"]) == ("action", "lead", shop.prog.offer_id)
    assert (purchase["type"], purchase["offer"], purchase["amount"]) == ("purchase", shop.prog.offer_id, 4250)


async def test_tune_post_is_accepted_like_get(settings: Settings, shop: Shop) -> None:
    url = _tune(shop)
    async with running(settings) as t:
        response = await t.http.post(url)
        assert response.text == "success=true;"
        assert (await t.written())[0] == 1


def _unknown_link(shop: Shop) -> str:
    return shop.signer.issue(10_000_000, int(time.time()))


TUNE_REFUSALS: list[tuple[str, str, Callable[[Shop], str]]] = [
    ("unknown_offer", "unknown_offer", lambda s: _tune(s, offer_id=999_999)),
    ("no_offer_forged", "click_id_bad_signature", lambda s: _tune(s, offer_id=DROP, transaction_id=flip(s.click_id))),
    ("no_offer_unknown_link", "unknown_offer", lambda s: _tune(s, offer_id=DROP, transaction_id=_unknown_link(s))),
    ("no_offer_expired", "click_id_expired", lambda s: _tune(s, offer_id=DROP, transaction_id=_old(s))),
    ("no_offer_no_transaction", "missing_transaction_id", lambda s: _tune(s, offer_id=DROP, transaction_id=DROP)),
    ("no_offer_bad_token", "bad_token", lambda s: _tune(s, offer_id=DROP, security_token="nope")),
    ("missing_token", "missing_token", lambda s: _tune(s, security_token=DROP)),
    ("bad_token", "bad_token", lambda s: _tune(s, security_token="nope")),
    ("hmac_secret_as_token", "bad_token", lambda s: _tune(s, security_token=s.secret)),
    ("missing_transaction", "missing_transaction_id", lambda s: _tune(s, transaction_id=DROP)),
    ("bit_flip", "click_id_bad_signature", lambda s: _tune(s, transaction_id=flip(s.click_id))),
    ("malformed", "click_id_malformed", lambda s: _tune(s, transaction_id="123")),
    ("expired", "click_id_expired", lambda s: _tune(s, transaction_id=_old(s))),
    ("wrong_offer", "click_id_wrong_offer", lambda s: _tune(s, transaction_id=s.other_click_id)),
    ("negative", "negative_amount", lambda s: _tune(s, amount="-1")),
    ("nan", "invalid_amount", lambda s: _tune(s, amount="NaN")),
    ("decimals", "too_many_decimals", lambda s: _tune(s, amount="1.234")),
    ("currency", "unknown_currency", lambda s: _tune(s, currency="XYZ")),
    ("long_order", "field_too_long", lambda s: _tune(s, adv_sub="o" * 256)),
    ("sale_without_order", "missing_order_id", lambda s: _tune(s, adv_sub=DROP)),
    ("not_utf8", "invalid_utf8", lambda s: _tune(s) + "&x=%ff"),
]


@pytest.mark.parametrize(("code", "build"), [pytest.param(*c[1:], id=c[0]) for c in TUNE_REFUSALS])
async def test_tune_refusals_write_nothing(
    settings: Settings, shop: Shop, code: str, build: Callable[[Shop], str]
) -> None:
    async with running(settings) as t:
        response = await t.http.get(build(shop))
        assert await t.written() == (0, 0, 0)
    assert response.text.startswith(f"success=false; err_msg={code}: "), response.text
    assert response.text.endswith(";") and "\n" not in response.text


async def test_tune_needs_a_token_of_its_own_on_an_hmac_offer(
    settings: Settings, db: asyncpg.Connection, shop: Shop
) -> None:
    """The HMAC secret used to work as TUNE's plain token: an HMAC offer without a TUNE token refuses TUNE."""
    await db.execute("UPDATE offers SET tune_token = NULL WHERE id = $1", shop.prog.offer_id)
    async with running(settings) as t:
        for token in (shop.secret, TUNE_TOKEN, "anything"):
            response = await t.http.get(_tune(shop, security_token=token))
            assert response.text.startswith("success=false; err_msg=tune_not_enabled: "), response.text
        assert await t.written() == (0, 0, 0)


async def test_tune_honours_the_ip_allowlist(settings: Settings, db: asyncpg.Connection, shop: Shop) -> None:
    await _token_mode(db, shop, ["198.51.100.0/24"])
    async with running(settings) as t, t.client(ip="198.51.100.20") as allowed:
        refused = await t.http.get(_tune(shop))
        assert await t.written() == (0, 0, 0)
        accepted = await allowed.get(_tune(shop))
    assert refused.text.startswith("success=false; err_msg=ip_not_allowed: ")
    assert accepted.text == "success=true;"


# --- the /a/{offer} pixel ------------------------------------------------------------------------------------


def _assert_gif(response: httpx.Response, refusal: str | None) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == GIF
    assert response.headers.get("x-clickmint-refusal") == refusal


async def _pixel_sales(db: asyncpg.Connection, shop: Shop, max_amount: int | None = None) -> None:
    """The operator lets this offer take purchases from the pixel (off by default)."""
    await db.execute(
        """UPDATE offers SET conversion_sources = '{"pixel": ["action", "purchase"]}', pixel_max_amount_minor = $2
           WHERE id = $1""",
        shop.prog.offer_id,
        max_amount,
    )


async def test_pixel_attributes_by_click_id(settings: Settings, db: asyncpg.Connection, shop: Shop) -> None:
    await _pixel_sales(db, shop)
    async with running(settings) as t:
        lead = await t.http.get(f"/a/{shop.prog.offer_id}", params={"click_id": shop.click_id})
        sale = await t.http.get(
            f"/a/{shop.prog.offer_id}", params={"click_id": shop.click_id, "order_id": "o-1", "amount": "25.5"}
        )
        first, second = await t.shard_events(t.shard(shop.prog.code))
    _assert_gif(lead, None)
    _assert_gif(sale, None)
    assert (first["type"], first["action"], first["via"]) == ("action", "lead", "pixel")
    assert (first["link"], first["partner"]) == (shop.prog.link_id, shop.prog.partner_id)
    assert (second["type"], second["amount"], second["currency"]) == ("purchase", 2550, "USD")
    assert second["order_id"] == "o-1"


async def test_pixel_attributes_by_the_click_cookie(settings: Settings, shop: Shop) -> None:
    async with running(settings) as t:
        click = await t.http.get(f"/c/{shop.prog.code}")  # the client keeps cm_{offer} like a browser would
        pixel = await t.http.get(f"/a/{shop.prog.offer_id}?action=signup")
        click_event, action = await t.shard_events(t.shard(shop.prog.code))
    assert click.status_code == 302
    _assert_gif(pixel, None)
    assert (action["type"], action["action"], action["via"]) == ("action", "signup", "cookie")
    assert action["click_id"] == click_event["click_id"]


async def test_pixel_click_id_param_wins_over_cookie(settings: Settings, shop: Shop) -> None:
    cookie = {"cookie": f"cm_{shop.prog.offer_id}={flip(shop.click_id)}; other=1"}
    async with running(settings) as t:
        pixel = await t.http.get(f"/a/{shop.prog.offer_id}?click_id={shop.click_id}", headers=cookie)
        [event] = await t.events()
    _assert_gif(pixel, None)
    assert (event["click_id"], event["via"]) == (shop.click_id, "pixel")


_BAD_QTY = quote(orjson.dumps([{"sku": "a", "qty": 0, "price": "1.00"}]).decode())


async def test_pixel_takes_the_postbacks_basket(settings: Settings, db: asyncpg.Connection, shop: Shop) -> None:
    await _pixel_sales(db, shop)  # a basket is a purchase: the offer must take purchases from the pixel
    items = [{"sku": "tee", "qty": 2, "price": "19.99"}, {"sku": "cap-" + "x" * 250, "price": "5.00"}]
    basket = quote(orjson.dumps(items).decode())  # longer than any other pixel parameter may be
    async with running(settings) as t:
        pixel = await t.http.get(_pixel(shop, shop.click_id, f"&order_id=o-9&amount=43.98&items={basket}"))
        [event] = await t.events()
    _assert_gif(pixel, None)
    long_sku = {"sku": "cap-" + "x" * 250, "qty": 1, "price": 500}  # qty defaults to 1
    assert event["items"] == [{"sku": "tee", "qty": 2, "price": 1999}, long_sku]


def _pixel(s: Shop, click_id: str, extra: str = "") -> str:
    return f"/a/{s.prog.offer_id}?click_id={click_id}{extra}"


def _basket(s: Shop, items: str) -> str:
    return _pixel(s, s.click_id, f"&order_id=o&amount=1&items={items}")


# (test id, path and query, refusal, recorded as a non-billable event?)
PIXEL_REFUSALS: list[tuple[str, Callable[[Shop], str], str, bool]] = [
    ("unknown_offer", lambda s: "/a/999999?click_id=" + s.click_id, "unknown_offer", False),
    ("non_numeric_offer", lambda s: "/a/abc?click_id=" + s.click_id, "unknown_offer", False),
    ("no_click_id_no_cookie", lambda s: f"/a/{s.prog.offer_id}", "missing_click_id", False),
    ("not_utf8", lambda s: _pixel(s, s.click_id, "&x=%ff"), "invalid_utf8", False),
    ("long_order_id", lambda s: _pixel(s, s.click_id, "&order_id=" + "o" * 256), "field_too_long", False),
    ("bit_flip", lambda s: _pixel(s, flip(s.click_id)), "click_id_bad_signature", True),
    ("forged", lambda s: _pixel(s, forge(s.prog.link_id)), "click_id_bad_signature", True),
    ("malformed", lambda s: _pixel(s, "nope"), "click_id_malformed", True),
    ("expired", lambda s: _pixel(s, _old(s)), "click_id_expired", True),
    ("wrong_offer", lambda s: _pixel(s, s.other_click_id), "click_id_wrong_offer", True),
    ("negative_amount", lambda s: _pixel(s, s.click_id, "&order_id=o&amount=-3"), "negative_amount", True),
    ("too_many_decimals", lambda s: _pixel(s, s.click_id, "&order_id=o&amount=1.234"), "too_many_decimals", True),
    ("basket_not_json", lambda s: _basket(s, "%5B%7B"), "invalid_items", True),
    ("basket_bad_qty", lambda s: _basket(s, _BAD_QTY), "invalid_items", True),
    ("purchase_by_default", lambda s: _pixel(s, s.click_id, "&order_id=o&amount=5.00"), "source_not_allowed", True),
    ("refund", lambda s: _pixel(s, s.click_id, "&type=refund&order_id=o"), "source_not_allowed", True),
]


@pytest.mark.parametrize(("build", "code", "recorded"), [pytest.param(*c[1:], id=c[0]) for c in PIXEL_REFUSALS])
async def test_pixel_refusals_are_a_gif_and_never_billable(
    settings: Settings, shop: Shop, build: Callable[[Shop], str], code: str, recorded: bool
) -> None:
    async with running(settings) as t:
        response = await t.http.get(build(shop))
        events = await t.events()
    _assert_gif(response, code)
    if not recorded:
        assert events == []
        return
    [event] = events
    assert (event["type"], event["offer"], event["refusal"]) == ("action", shop.prog.offer_id, code)
    assert event["via"] == "pixel"
    assert not {"amount", "partner", "link", "order_id"} & set(event)


async def test_pixel_purchases_where_allowed_and_up_to_the_maximum(
    settings: Settings, db: asyncpg.Connection, shop: Shop
) -> None:
    await _pixel_sales(db, shop, max_amount=5000)
    async with running(settings) as t:
        below = await t.http.get(_pixel(shop, shop.click_id, "&order_id=o-1&amount=50.00"))
        above = await t.http.get(_pixel(shop, shop.click_id, "&order_id=o-2&amount=50.01"))
        refund = await t.http.get(_pixel(shop, shop.click_id, "&type=refund&order_id=o-1"))
        by_cookie = await t.http.get(
            f"/a/{shop.prog.offer_id}?order_id=o-3&amount=1.00",
            headers={"cookie": f"cm_{shop.prog.offer_id}={shop.click_id}"},
        )
        events = await t.events()
    # Ids made in one millisecond are random in their tail, so the events are told apart by content, not order.
    [sale] = [e for e in events if "refusal" not in e]
    refusals = sorted(e["refusal"] for e in events if "refusal" in e)
    _assert_gif(below, None)
    _assert_gif(above, "amount_over_pixel_max")
    _assert_gif(refund, "source_not_allowed")  # never, whatever the offer says
    _assert_gif(by_cookie, "source_not_allowed")  # the cookie pixel is a channel of its own
    assert (sale["type"], sale["amount"], sale["via"], sale["auth"]) == ("purchase", 5000, "pixel", "none")
    assert refusals == ["amount_over_pixel_max", "source_not_allowed", "source_not_allowed"]


async def test_postback_kinds_follow_the_offers_sources(settings: Settings, db: asyncpg.Connection, shop: Shop) -> None:
    await db.execute(
        """UPDATE offers SET conversion_sources = '{"postback": ["action"]}' WHERE id = $1""", shop.prog.offer_id
    )
    async with running(settings) as t:
        await assert_refused(t, t.http, as_json(shop), 403, "source_not_allowed")
        lead = await send(t.http, as_json(shop, type="action", amount=DROP, order_id=DROP))
        assert lead.status_code == 200, lead.text
        [event] = await t.events()
    assert (event["via"], event["auth"]) == ("postback", "signature")


async def test_head_pixel_is_answered_but_never_billable(settings: Settings, shop: Shop) -> None:
    async with running(settings) as t:
        response = await t.http.head(f"/a/{shop.prog.offer_id}?click_id={shop.click_id}&order_id=o&amount=9.99")
        events = await t.events()
    assert response.status_code == 200 and response.headers["content-type"] == "image/gif"
    # HEAD requests are answered but never billed (docs/tracker.md): no event, or one that billing refuses.
    assert all(event.get("refusal") for event in events), events


async def test_each_refusal_is_counted_once_in_metrics(settings: Settings, shop: Shop) -> None:
    async with running(settings) as t:
        await t.http.get(f"/a/{shop.prog.offer_id}")
        await send(t.http, as_json(shop, amount="-1"))
        await t.http.get(_tune(shop, security_token="nope"))
        lines = set((await t.http.get("/metrics")).text.splitlines())
    assert 'clickmint_requests_total{route="a",outcome="missing_click_id"} 1' in lines
    assert {line for line in lines if line.startswith("clickmint_refusals_total{")} == {
        'clickmint_refusals_total{code="bad_token"} 1',
        'clickmint_refusals_total{code="missing_click_id"} 1',
        'clickmint_refusals_total{code="negative_amount"} 1',
    }
