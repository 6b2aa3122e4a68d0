"""Conversion input (pixel, postback, TUNE postback) checked and turned into an event; pure, no HTTP.

Refusals carry a machine-readable code; nothing refused here ever reaches a stream as billable.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Mapping
from typing import Any

import orjson

from kernel import crediting, sources
from kernel.money import AmountError, normalize_currency, parse_amount
from tracker.clickids import ClickIdError, ClickIdSigner
from tracker.snapshot import Link, Offer, Snapshot

KINDS = ("action", "purchase", "refund")
MAX_ITEMS = 100
MAX_TEXT = 255
SIGNATURE_TOLERANCE_S = 300
MAX_WINDOW_S = 31_536_000  # the longest attribution window an offer may have (offers.attribution_window_s)
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.")
_HEX = frozenset("0123456789abcdef")


class Refusal(ValueError):
    """Input we do not accept: `code` for machines, `detail` for people, `status` for HTTP."""

    def __init__(self, code: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.status = status


def _text(params: Mapping[str, Any], name: str, *, required: bool = False, default: str = "") -> str:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise Refusal(f"missing_{name}", f"{name} is required")
        return default
    if not isinstance(value, str):
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
        if value is None:
            raise Refusal(f"invalid_{name}", f"{name} must be a string")
    if len(value) > MAX_TEXT:
        raise Refusal("field_too_long", f"{name} is longer than {MAX_TEXT} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise Refusal(f"invalid_{name}", f"{name} contains control characters")
    return value


def offer_of(snapshot: Snapshot, raw_offer: str) -> Offer:
    if not raw_offer.isdigit() or len(raw_offer) > 18:
        raise Refusal("unknown_offer", "the offer id must be a positive whole number", 404)
    offer = snapshot.offers.get(int(raw_offer))
    if offer is None:
        raise Refusal("unknown_offer", f"no offer {raw_offer}", 404)
    return offer


def offer_of_click(signer: ClickIdSigner, snapshot: Snapshot, token: str, now: int) -> Offer:
    """The offer a signed click id names through its link (TUNE's /aff_lsr without offer_id); the id's
    age is checked against that offer's window afterwards, by `attribute`."""
    try:
        click = signer.verify(token, now, MAX_WINDOW_S)
    except ClickIdError as exc:
        raise Refusal(f"click_id_{exc.reason}", f"the click id is refused: {exc.reason.replace('_', ' ')}") from None
    link = snapshot.links_by_id.get(click.link_id)
    if link is None:
        raise Refusal("unknown_offer", "the transaction id names no link of a known offer", 404)
    return link.offer


def attribute(signer: ClickIdSigner, snapshot: Snapshot, offer: Offer, token: str, now: int) -> Link:
    """The link a click id names, verified without a lookup and checked to belong to this offer."""
    try:
        click = signer.verify(token, now, offer.window_s)
    except ClickIdError as exc:
        raise Refusal(f"click_id_{exc.reason}", f"the click id is refused: {exc.reason.replace('_', ' ')}") from None
    link = snapshot.links_by_id.get(click.link_id)
    if link is None or link.offer.id != offer.id:
        raise Refusal("click_id_wrong_offer", "the click id belongs to another offer")
    return link


def credit(
    signer: ClickIdSigner, snapshot: Snapshot, offer: Offer, token: str, via: str, coupon: str, now: float
) -> crediting.Credit:
    """Who this conversion credits, from its click id (or cookie: `via`) and its coupon code, by the offer's
    coupon policy (tracker/crediting.py); raises Refusal when nobody is credited."""
    code = crediting.normalize(coupon) if coupon else ""
    link: Link | None = None
    refused: Refusal | None = None
    if token:
        try:
            link = attribute(signer, snapshot, offer, token, int(now))
        except Refusal as exc:
            if not code:
                raise
            refused = exc  # with a coupon, a click id that fails verification counts as no click
    found = offer.coupons.get(code) if code and crediting.valid_code(code) else None
    state = crediting.state(found, now) if code else None
    valid = found if state == "valid" else None
    decision = crediting.decide(
        offer.coupon_policy, link.partner_id if link else None, valid.partner_id if valid else None
    )
    if decision == "click" and link is not None:
        return crediting.Credit(via, link.partner_id, link.id, token)
    if decision == "coupon" and valid is not None:
        return crediting.Credit("coupon", valid.partner_id, valid.link_id, None)
    if refused is not None and state == "valid":
        raise refused
    if code and state != "valid":
        raise Refusal(f"coupon_{state}", f"the coupon code is {str(state).replace('_', ' ')} on this offer", 422)
    if code:
        raise Refusal("coupon_not_credited", "this offer credits a coupon only together with its partner's click", 422)
    raise Refusal("missing_click_id", "no click id, tracking cookie or coupon")


def check_token(offer: Offer, token: str, client_ip: str) -> None:
    """The TUNE model: the offer's secret token and, when the offer has one, its IP allowlist."""
    if not token:
        raise Refusal("missing_token", "this offer requires its postback token", 401)
    if not hmac.compare_digest(token.encode(), offer.postback_secret.encode()):
        raise Refusal("bad_token", "the postback token does not match", 401)
    if offer.postback_ips and not _ip_allowed(client_ip, offer.postback_ips):
        raise Refusal("ip_not_allowed", "the postback comes from an address outside the offer's allowlist", 403)


def check_tune_token(offer: Offer, token: str, client_ip: str) -> None:
    """TUNE's token: on an HMAC offer only a TUNE token of its own (its HMAC secret is never a plain token)."""
    if offer.postback_security == "hmac" and offer.tune_token is None:
        raise Refusal("tune_not_enabled", "this offer's postbacks are HMAC-signed and it has no TUNE token", 403)
    expected = offer.tune_token if offer.tune_token is not None else offer.postback_secret
    if not token:
        raise Refusal("missing_token", "this offer requires its postback token", 401)
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Refusal("bad_token", "the postback token does not match", 401)
    if offer.postback_ips and not _ip_allowed(client_ip, offer.postback_ips):
        raise Refusal("ip_not_allowed", "the postback comes from an address outside the offer's allowlist", 403)


def check_source(offer: Offer, channel: str, event: dict[str, Any]) -> None:
    """Whether this channel may create this kind of conversion on the offer (kernel/sources.py)."""
    code = sources.refusal(offer.sources, channel, event["type"], event.get("amount"), offer.pixel_max_minor)
    if code is not None:
        raise Refusal(code, sources.REFUSALS[code], 403)


def _ip_allowed(client_ip: str, networks: tuple[str, ...]) -> bool:
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net, strict=False) for net in networks)


def check_signature(offer: Offer, timestamp: str, signature: str, body: bytes, now: int) -> str:
    """HMAC-SHA256 over "<timestamp>.<body>" with the offer's secret; returns the signature as a nonce."""
    if not timestamp or not signature:
        raise Refusal("missing_signature", "send X-Clickmint-Timestamp and X-Clickmint-Signature", 401)
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise Refusal("bad_timestamp", "the timestamp must be Unix seconds", 401)
    if abs(now - int(timestamp)) > SIGNATURE_TOLERANCE_S:
        raise Refusal("stale_timestamp", "the timestamp is more than 5 minutes from our clock", 401)
    expected = hmac.new(offer.postback_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    given = signature.removeprefix("sha256=")
    if not hmac.compare_digest(expected.encode(), given.encode("ascii", "replace")):
        raise Refusal("bad_signature", "the signature does not match the body", 401)
    return given


def _items(raw: Any, currency: str) -> list[dict[str, Any]]:
    """The basket, one format everywhere: a JSON array of {"sku", "qty" (default 1), "price", "category"
    (optional)}; in a pixel's query or a form, that array as JSON text."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, str):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise Refusal("invalid_items", "items must be a JSON array") from None
    if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
        raise Refusal("invalid_items", f"items must be a list of at most {MAX_ITEMS} objects")
    items = []
    for item in raw:
        if not isinstance(item, dict):
            raise Refusal("invalid_items", "each item is an object with sku, qty and price")
        sku = _text(item, "sku", required=True)
        qty = item.get("qty", 1)
        if not isinstance(qty, int) or isinstance(qty, bool) or not 1 <= qty <= 100_000:
            raise Refusal("invalid_items", "qty must be a whole number from 1 to 100000")
        price = item.get("price")
        if not isinstance(price, str):
            raise Refusal("invalid_amount", 'item prices are decimal strings, e.g. "19.99"')
        item_row = {"sku": sku, "qty": qty, "price": _amount(price, currency)}
        if category := _text(item, "category"):  # optional: what loyalty rules by category match
            item_row["category"] = category
        items.append(item_row)
    return items


def _amount(text: str, currency: str) -> int:
    try:
        return parse_amount(text, currency)
    except AmountError as exc:
        raise Refusal(exc.code, exc.detail) from None


def build(params: Mapping[str, Any], offer: Offer, credit: crediting.Credit, coupon: str = "") -> dict[str, Any]:
    """The event fields of one conversion, credited as `credit` says; raises Refusal for anything malformed."""
    kind = _text(params, "type", default="")
    if not kind:
        kind = "purchase" if params.get("amount") not in (None, "") else "action"
    if kind not in KINDS:
        raise Refusal("invalid_type", f"type must be one of {', '.join(KINDS)}")
    event: dict[str, Any] = {
        "type": kind,
        "link": credit.link_id,
        "partner": credit.partner_id,
        "offer": offer.id,
        "click_id": credit.click_id,
    }
    code = crediting.normalize(coupon)[:64] if coupon else ""
    if code:  # as the merchant sent it, upper-cased; blank is no coupon
        event["coupon"] = code
    event["credited_by"] = credit.by
    if credit.link_id is None:
        del event["link"]
    if credit.by == "coupon":  # a code-only sale: no click, so no sub ids and no country (docs/attribution.md)
        del event["click_id"]
    # a coupon's sale needs its order id: without one, nothing would stop the same sale being paid again
    order_id = _text(params, "order_id", required=kind != "action" or credit.by == "coupon")
    if order_id:
        event["order_id"] = order_id
    if kind == "action":
        name = _text(params, "action", default="lead").lower()
        if not set(name) <= _NAME_CHARS:
            raise Refusal("invalid_action", "action names use a-z, 0-9, '_', '-' and '.'")
        event["action"] = name
    raw_currency = _text(params, "currency", default=offer.currency)
    try:
        currency = normalize_currency(raw_currency)
    except AmountError as exc:
        raise Refusal(exc.code, exc.detail) from None
    amount = params.get("amount")
    if kind == "purchase" or (amount not in (None, "")):
        if not isinstance(amount, str) or amount == "":
            raise Refusal(
                "missing_amount" if amount in (None, "") else "invalid_amount",
                'amount is a decimal string, e.g. "129.99"',
            )
        event["amount"] = _amount(amount, currency)
        event["currency"] = currency
    if kind == "purchase":
        items = _items(params.get("items"), currency)
        if items:
            event["items"] = items
    customer = _text(params, "customer_id")
    if customer:
        event["customer"] = customer
    email = _text(params, "customer_email_sha256").lower()
    if email:  # the SHA-256 of the customer's lower-cased e-mail address, for the self-referral rule; never stored
        if len(email) != 64 or not set(email) <= _HEX:
            raise Refusal("invalid_customer_email_sha256", "customer_email_sha256 is 64 hexadecimal digits")
        event["email_sha256"] = email
    return event
