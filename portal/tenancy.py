"""The tenancy model in one place: whose objects each kind of caller may name, and the one check every id of
every write (and every id in a path) goes through before a handler or page sees it. docs/tenancy.md tells it.

Tenants:
  partner   a person or company; may belong to many merchants' programmes. Names only its own links,
            postbacks, statements and keys, the offers (and their banners) of programmes that approved it,
            and those merchants.
  operator  one merchant's programme: its offers, banners, links, statements, invitations, and the partners
            in its programme. Never a partner's credentials, never whether an e-mail exists outside it.
  network   every merchant (an operator of operators): anything that exists; same rule on credentials.
  cli       the machine's owner (`clickmint admin`): as network, and may also enrol partners and make users.

A body field is a reference when its check is `validate.ref(kind)`; a path parameter when named in PATH_KINDS.
An id outside the caller's tenant is answered exactly as an id that does not exist: 404 not_found.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg

from portal import validate
from portal.auth import Principal
from portal.errors import not_found
from portal.partner_data import OPEN_OFFERS

PATH_KINDS = {
    "merchant_id": "merchant",
    "offer_id": "offer",
    "partner_id": "partner",
    "link_id": "link",
    "creative_id": "creative",
    "statement_id": "statement",
    "postback_id": "postback",
    "invitation_id": "invitation",
    "key_id": "key",
}

# kind -> (as a partner, as one merchant's operator, as a network operator or the owner). $1 is the id named,
# $2 the caller's partner id or merchant id. None: that caller never names that kind of object.
_RULES: dict[str, tuple[str | None, str | None, str | None]] = {
    "merchant": (
        "SELECT 1 FROM partner_programmes WHERE merchant_id = $1 AND partner_id = $2 AND status = 'approved'",
        "SELECT 1 WHERE $1::bigint = $2::bigint",
        "SELECT 1 FROM merchants WHERE id = $1",
    ),
    "offer": (
        f"SELECT 1 FROM ({OPEN_OFFERS}) open_offers WHERE id = $2",
        "SELECT 1 FROM offers WHERE id = $1 AND merchant_id = $2",
        "SELECT 1 FROM offers WHERE id = $1",
    ),
    "partner": (
        "SELECT 1 WHERE $1::bigint = $2::bigint",
        "SELECT 1 FROM partner_programmes WHERE partner_id = $1 AND merchant_id = $2",
        "SELECT 1 FROM partners WHERE id = $1",
    ),
    "creative": (
        f"SELECT 1 FROM creatives c WHERE c.id = $2 AND c.offer_id IN (SELECT id FROM ({OPEN_OFFERS}) open_offers)",
        "SELECT 1 FROM creatives c JOIN offers o ON o.id = c.offer_id WHERE c.id = $1 AND o.merchant_id = $2",
        "SELECT 1 FROM creatives WHERE id = $1",
    ),
    "link": (
        "SELECT 1 FROM links WHERE id = $1 AND partner_id = $2",
        "SELECT 1 FROM links l JOIN offers o ON o.id = l.offer_id WHERE l.id = $1 AND o.merchant_id = $2",
        "SELECT 1 FROM links WHERE id = $1",
    ),
    "statement": (
        "SELECT 1 FROM statements WHERE id = $1 AND partner_id = $2",
        "SELECT 1 FROM statements WHERE id = $1 AND merchant_id = $2",
        "SELECT 1 FROM statements WHERE id = $1",
    ),
    "postback": ("SELECT 1 FROM partner_postbacks WHERE id = $1 AND partner_id = $2 AND status = 'active'", None, None),
    "invitation": (
        None,
        "SELECT 1 FROM partner_invitations WHERE id = $1 AND merchant_id = $2",
        "SELECT 1 FROM partner_invitations WHERE id = $1",
    ),
}
# The partner's OPEN_OFFERS query takes the partner as $1: its rules above swap the parameters' roles.
_PARTNER_FIRST = {"offer", "creative"}


async def owns(conn: asyncpg.Connection, who: Principal, kind: str, object_id: int) -> bool:
    """Whether `who` may name object `object_id` of `kind`."""
    if kind == "key":  # an API key is its user's alone, whatever the role
        found = await conn.fetchval("SELECT 1 FROM api_keys WHERE id = $1 AND user_id = $2", object_id, who.user_id)
        return bool(found)
    as_partner, as_operator, as_network = _RULES[kind]
    if who.is_partner:
        sql, scope = as_partner, who.partner_id
    elif who.merchant_scope() is not None:
        sql, scope = as_operator, who.merchant_scope()
    else:  # a network operator or the command line: anything that exists
        sql, scope = as_network, None
    if sql is None:
        return False
    if scope is None:
        return bool(await conn.fetchval(sql, object_id))
    if who.is_partner and kind in _PARTNER_FIRST:
        return bool(await conn.fetchval(sql, scope, object_id))
    return bool(await conn.fetchval(sql, object_id, scope))


async def check(conn: asyncpg.Connection, who: Principal, refs: Mapping[str, tuple[str, Any]]) -> None:
    """Each named (kind, id) must be the caller's to name; else 404 as if it did not exist."""
    for name, (kind, object_id) in refs.items():
        if object_id is None:
            continue
        if not isinstance(object_id, int) or not await owns(conn, who, kind, object_id):
            raise not_found(name.removesuffix("_id"))


def references(spec: Mapping[str, tuple[validate.Check, bool]]) -> dict[str, str]:
    """The reference fields of a body spec: field name -> kind."""
    return {name: ref for name, (check, _) in spec.items() if (ref := getattr(check, "ref", None))}


async def read(
    conn: asyncpg.Connection,
    who: Principal | None,
    data: Mapping[str, Any],
    spec: Mapping[str, tuple[validate.Check, bool]],
    ignore: tuple[str, ...] = ("csrf_token",),
) -> dict[str, Any]:
    """A body or form checked against its spec, and every reference in it checked against the caller's tenant."""
    values = validate.fields(data, spec, ignore=ignore)
    refs = references(spec)
    if refs:
        assert who is not None, "a public route takes no references"
        await check(conn, who, {name: (kind, values.get(name)) for name, kind in refs.items()})
    return values


async def check_path(conn: asyncpg.Connection, who: Principal, params: Mapping[str, str]) -> None:
    """Every id in a route's path, checked like a body's references (a malformed one is simply not found)."""
    for name, raw in params.items():
        kind = PATH_KINDS.get(name)
        if kind is None:
            continue
        if not raw.isdigit() or len(raw) > 18 or not await owns(conn, who, kind, int(raw)):
            raise not_found(name.removesuffix("_id"))
