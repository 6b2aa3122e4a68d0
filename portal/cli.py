"""`clickmint admin ...`: the operator's operations from the command line, through the same data layer
and validation as the API, each change written to the audit log as `cli:<user>`.

It runs as the machine's owner (with the database's own credentials) and is on purpose more powerful than
any operator: it enrols partners directly (`partner add`), makes users of every kind (`user add --role
partner`) and prints password reset links (`user reset`). Operators in the portal invite; partners accept."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

import asyncpg
import orjson

from portal import api_operator, passwords, users, validate
from portal import operator_data as data
from portal import operator_partners as opartners
from portal import operator_reports as oreports
from portal.auth import Principal
from portal.errors import ApiError
from portal.settings import PortalSettings


def _who() -> Principal:
    return Principal(
        user_id=0,
        email=f"cli:{getpass.getuser()}",
        name="command line",
        role="network",
        partner_id=None,
        merchant_id=None,
        via="cli",
        scopes=frozenset(("read", "write")),
    )


_DEFAULT_LOCALE = (
    "the merchant's default language, one of en, es, fr, de, pl (default en): the portal's for its users who chose "
    "none (nor their browser), and the language of its statements closed from then on whose partner chose none"
)


def add_args(parser: argparse.ArgumentParser) -> None:
    objects = parser.add_subparsers(dest="object", required=True)

    merchant = objects.add_parser("merchant", help="merchants").add_subparsers(dest="action", required=True)
    merchant.add_parser("list")
    m_add = merchant.add_parser("add")
    m_add.add_argument("--slug", required=True)
    m_add.add_argument("--name", required=True)
    m_add.add_argument("--currency")
    m_add.add_argument("--address", help="postal address printed on statements (newlines as \\n)")
    m_add.add_argument("--payment-terms", help="printed on statements, e.g. 'Net 30, by bank transfer'")
    m_add.add_argument("--default-locale", metavar="LANG", help=_DEFAULT_LOCALE)
    m_edit = merchant.add_parser("edit", help="change a merchant's name, address, payment terms or default language")
    m_edit.add_argument("slug", help="merchant slug")
    m_edit.add_argument("--name")
    m_edit.add_argument("--address", help="postal address printed on statements (newlines as \\n)")
    m_edit.add_argument("--payment-terms", help="printed on statements closed from then on")
    m_edit.add_argument("--default-locale", metavar="LANG", help=_DEFAULT_LOCALE)

    offer = objects.add_parser("offer", help="offers").add_subparsers(dest="action", required=True)
    offer.add_parser("list")
    o_add = offer.add_parser("add")
    o_add.add_argument("--merchant", required=True, help="merchant slug")
    o_add.add_argument("--name", required=True)
    o_add.add_argument("--destination", required=True, help="destination URL with macros such as {click_id}")
    o_add.add_argument("--plan", default="{}", help='fee plan JSON, e.g. \'{"cps_percent": "10"}\'')
    o_add.add_argument("--caps", default="{}", help="caps JSON")
    o_add.add_argument("--visibility", choices=("public", "partners", "private"))
    o_add.add_argument("--hold-days")
    o_add.add_argument(
        "--repeat-actions",
        choices=("yes", "no"),
        help="pay every repeat of an action without order id (default: once per click and action name)",
    )
    o_add.add_argument("--window-s", help="attribution window in seconds")
    o_add.add_argument("--hosts", help="allowed deep-link hosts, comma separated")
    o_add.add_argument("--fallback", help="fallback URL (over cap, paused)")
    o_add.add_argument("--starts", help="ISO 8601 time with zone")
    o_add.add_argument("--ends", help="ISO 8601 time with zone")
    o_add.add_argument(
        "--sources",
        help='which channel may create which kind of conversion, JSON over the safe defaults, e.g. \'{"pixel": '
        '["action", "purchase"]}\' (docs/conversion-sources.md)',
    )
    o_add.add_argument("--pixel-max", help='the most a pixel purchase may claim, e.g. "250.00"')
    o_add.add_argument("--tune-token", help='TUNE\'s own token for /aff_lsr on an HMAC offer, or "generate"')
    o_set = offer.add_parser("status")
    o_set.add_argument("id", type=int)
    o_set.add_argument("status", choices=("active", "paused", "archived"))

    partner = objects.add_parser(
        "partner", help="partners (`add` enrols one directly: the owner's power, operators only invite)"
    ).add_subparsers(dest="action", required=True)
    partner.add_parser("list")
    p_add = partner.add_parser("add")
    p_add.add_argument("--merchant", required=True, help="merchant slug")
    p_add.add_argument("--name", required=True)
    p_add.add_argument("--email", required=True)
    p_add.add_argument("--address", help="postal address printed on its statements (newlines as \\n)")
    p_add.add_argument(
        "--no-invite", action="store_true", help="do not create a partner user and mail it a password link"
    )
    p_status = partner.add_parser("status")
    p_status.add_argument("id", type=int)
    p_status.add_argument("status", choices=("applied", "approved", "suspended", "rejected"))
    p_status.add_argument("--merchant", required=True, help="merchant slug")

    link = objects.add_parser("link", help="tracking links").add_subparsers(dest="action", required=True)
    l_add = link.add_parser("add")
    l_add.add_argument("--offer", type=int, required=True)
    l_add.add_argument("--partner", type=int, required=True)

    product = objects.add_parser("product", help="products and wholesale prices").add_subparsers(
        dest="action", required=True
    )
    pr_set = product.add_parser("set")
    pr_set.add_argument("--merchant", required=True, help="merchant slug")
    pr_set.add_argument("--sku", required=True)
    pr_set.add_argument("--name", required=True)
    pr_set.add_argument("--wholesale", required=True, help='decimal amount, e.g. "12.50"')
    pr_set.add_argument("--currency", required=True)

    rate = objects.add_parser("rate", help="currency rates").add_subparsers(dest="action", required=True)
    r_add = rate.add_parser("add")
    r_add.add_argument("--merchant", required=True, help="merchant slug")
    r_add.add_argument("--base", required=True)
    r_add.add_argument("--quote", required=True)
    r_add.add_argument("--rate", required=True, help="1 base = RATE quote, a decimal string")

    user = objects.add_parser(
        "user", help="portal users (any role, partner users included: the owner's power)"
    ).add_subparsers(dest="action", required=True)
    u_add = user.add_parser("add")
    u_add.add_argument("--email", required=True)
    u_add.add_argument("--role", choices=("partner", "operator", "network"), required=True)
    u_add.add_argument("--merchant", help="merchant slug (operators)")
    u_add.add_argument("--partner", type=int, help="partner id (partner users)")
    u_add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    u_reset = user.add_parser("reset", help="print a password reset link")
    u_reset.add_argument("email")

    key = objects.add_parser("key", help="API keys").add_subparsers(dest="action", required=True)
    k_add = key.add_parser("add")
    k_add.add_argument("--email", required=True, help="the user the key acts as")
    k_add.add_argument("--name", required=True)
    k_add.add_argument("--write", action="store_true", help="allow changes (default: read only)")

    audit = objects.add_parser("audit", help="the audit log")
    audit.add_argument("--limit", type=int, default=50)


OWNER_USER = {
    "email": (validate.text(3, 254), True),
    "role": (validate.choice("partner", "operator", "network"), True),
    "partner_id": (validate.integer(1), False),
    "merchant_id": (validate.integer(1), False),
}


def _print(value: Any) -> None:
    sys.stdout.write(orjson.dumps(value, default=str, option=orjson.OPT_INDENT_2).decode() + "\n")


async def _merchant_id(conn: asyncpg.Connection, slug: str) -> int:
    found = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", slug)
    if found is None:
        raise ApiError(404, "not_found", f"no merchant with slug {slug!r}")
    return found


def _given(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    return {field: getattr(args, attr) for attr, field in mapping.items() if getattr(args, attr) is not None}


async def run(args: argparse.Namespace, settings: PortalSettings, conn: asyncpg.Connection) -> None:
    who = _who()
    obj, action = args.object, getattr(args, "action", None)
    if obj == "merchant" and action == "list":
        _print(await data.merchants(conn, who))
    elif obj == "merchant":
        given = _given(args, {"name": "name", "address": "address", "payment_terms": "payment_terms"})
        given |= _given(args, {"default_locale": "default_locale"})
        if "address" in given:
            given["address"] = given["address"].replace("\\n", "\n")
        if action == "edit":
            merchant_id = await _merchant_id(conn, args.slug)
            values: dict[str, Any] = validate.fields(given, api_operator.EDIT_MERCHANT)
            _print(await data.update_merchant(conn, who, merchant_id, values))
        else:
            given |= _given(args, {"slug": "slug", "currency": "currency"})
            values = validate.fields(given, api_operator.NEW_MERCHANT)
            _print(await data.create_merchant(conn, who, values))
    elif obj == "offer" and action == "list":
        _print(await data.offers(conn, who))
    elif obj == "offer" and action == "status":
        _print(await data.update_offer(conn, who, args.id, {"status": args.status}))
    elif obj == "offer":
        raw = _given(
            args,
            {
                "name": "name",
                "destination": "destination_url",
                "plan": "fee_plan",
                "caps": "caps",
                "visibility": "visibility",
                "hold_days": "hold_days",
                "repeat_actions": "repeat_actions",
                "window_s": "attribution_window_s",
                "hosts": "allowed_hosts",
                "fallback": "fallback_url",
                "starts": "starts_at",
                "ends": "ends_at",
                "sources": "conversion_sources",
                "pixel_max": "pixel_max_amount",
                "tune_token": "tune_token",
            },
        )
        raw["merchant_id"] = await _merchant_id(conn, args.merchant)
        _print(await data.create_offer(conn, who, validate.fields(raw, api_operator.OFFER)))
    elif obj == "partner" and action == "list":
        _print(await opartners.partners(conn, who))
    elif obj == "partner" and action == "status":
        _print(
            await opartners.set_partner_status(conn, who, args.id, await _merchant_id(conn, args.merchant), args.status)
        )
    elif obj == "partner":
        given = {"name": args.name, "email": args.email}
        if args.address:
            given["address"] = args.address.replace("\\n", "\n")
        values = validate.fields(given, api_operator.ENROL_PARTNER)
        values["email"] = users.check_email(values["email"])
        values["merchant_id"] = await _merchant_id(conn, args.merchant)
        created = await opartners.enrol_partner(conn, who, values)
        if not args.no_invite:
            created["user_id"] = await users.invite(
                conn, settings, values["email"], values["name"], "partner", created["id"], created["merchant_id"]
            )
        _print(created)
    elif obj == "link":
        _print(await opartners.create_link(conn, who, {"offer_id": args.offer, "partner_id": args.partner}))
    elif obj == "product":
        values = validate.fields(
            {"sku": args.sku, "name": args.name, "wholesale": args.wholesale, "currency": args.currency},
            api_operator.PRODUCT,
        )
        values["merchant_id"] = await _merchant_id(conn, args.merchant)
        _print(await oreports.set_product(conn, who, values))
    elif obj == "rate":
        values = validate.fields({"base": args.base, "quote": args.quote, "rate": args.rate}, api_operator.RATE)
        values["merchant_id"] = await _merchant_id(conn, args.merchant)
        _print(await oreports.add_rate(conn, who, values))
    elif obj == "user" and action == "reset":
        row = await conn.fetchrow("SELECT id, password_hash FROM users WHERE email = $1", args.email.lower())
        if row is None:
            raise ApiError(404, "not_found", "no such user")
        token = passwords.reset_token(settings.core.secret_key, row["id"], row["password_hash"])
        _print({"reset_url": f"{settings.portal_url}/reset?token={token}", "valid_for_s": passwords.RESET_TTL_S})
    elif obj == "user":
        values = {"email": args.email, "role": args.role}
        if args.merchant:
            values["merchant_id"] = await _merchant_id(conn, args.merchant)
        if args.partner:
            values["partner_id"] = args.partner
        created = await users.create_by_owner(conn, settings, who, validate.fields(values, OWNER_USER))
        if args.password_stdin:
            await users.set_password(conn, created["id"], sys.stdin.readline().rstrip("\n"))
            created["password"] = "set"
        _print(created)
    elif obj == "key":
        user_id = await conn.fetchval("SELECT id FROM users WHERE email = $1", args.email.lower())
        if user_id is None:
            raise ApiError(404, "not_found", "no such user")
        key, prefix, digest = passwords.new_api_key()
        scopes = ["read", "write"] if args.write else ["read"]
        await conn.execute(
            "INSERT INTO api_keys (user_id, prefix, secret_sha256, name, scopes) VALUES ($1, $2, $3, $4, $5)",
            user_id,
            prefix,
            digest,
            args.name,
            scopes,
        )
        await data.audit(conn, who, None, "create", "api_key", prefix, {"user": args.email, "scopes": scopes})
        _print({"key": key, "scopes": scopes, "note": "shown once; store it now"})
    elif obj == "audit":
        _print(await oreports.audit_log(conn, who, args.limit))


def main(args: argparse.Namespace, database_url: str) -> int:
    settings = PortalSettings.from_env()

    async def go() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            await run(args, settings, conn)
            return 0
        except ApiError as exc:
            sys.stderr.write(f"clickmint admin: {exc.code}: {exc.detail}\n")
            return 1
        except asyncpg.PostgresError as exc:
            from portal.api import database_error

            refused = database_error(exc)
            sys.stderr.write(f"clickmint admin: {refused.code}: {refused.detail}\n")
            return 1
        finally:
            await conn.close()

    return asyncio.run(go())
