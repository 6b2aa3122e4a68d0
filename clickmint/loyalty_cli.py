"""`clickmint loyalty ...`: configure a merchant's programme, read a balance, adjust, run the daily expiry,
make a checkout key, print the liability."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

import asyncpg
import orjson

from billing import loyalty_ledger as ledger
from billing.loyalty_config import save_programme
from kernel.loyalty_rules import REFUND_POLICIES, LoyaltyError


def add_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="loyalty_command", required=True)
    enable = sub.add_parser("enable", help="turn a merchant's programme on (or change it); options keep their value")
    enable.add_argument("--merchant", required=True, help="the merchant's slug")
    enable.add_argument("--value-points", type=int, help="points worth --value-minor (default 100)")
    enable.add_argument(
        "--value-minor", type=int, help="what --value-points points are worth, in minor units (default 1)"
    )
    enable.add_argument("--expiry-days", type=int, help="days a lot lives once earned (0: never expires)")
    enable.add_argument("--refund-policy", choices=REFUND_POLICIES, help="reversed points already spent: "
                        "negative balance, or clamp (let them go)")  # fmt: skip
    enable.add_argument("--rules", help='earning rules as JSON, e.g. \'{"points_per_unit": 1, "unit_minor": 100}\'')
    enable.add_argument("--tiers", help='tiers as JSON, e.g. \'{"levels": [{"name": "Gold", "min": 1000, '
                        '"multiplier": "1.5"}]}\'')  # fmt: skip
    enable.add_argument("--referral", help='refer a friend as JSON: {"offer_id": 3, "referrer_points": 500, '
                        '"friend_points": 250} (the offer\'s fee plan should pay nothing)')  # fmt: skip
    enable.add_argument("--min-points", type=int, help="fewest points redeemed at once")
    enable.add_argument("--max-percent", type=int, help="most of an order points may pay, in percent")
    disable = sub.add_parser("disable", help="turn a merchant's programme off (balances are kept)")
    disable.add_argument("--merchant", required=True)
    balance = sub.add_parser("balance", help="a member's balance, tier, pending points and latest entries")
    balance.add_argument("--merchant", required=True)
    balance.add_argument("customer", help="the shop's customer id")
    adjust = sub.add_parser("adjust", help="add or take points by hand, with a reason (audited)")
    adjust.add_argument("--merchant", required=True)
    adjust.add_argument("customer")
    adjust.add_argument("points", type=int, help="points to add (negative: to take, oldest lots first)")
    adjust.add_argument("--reason", required=True, help="why, kept in the entry and the audit log")
    adjust.add_argument("--by", default="cli", help="who, for the audit log")
    expire = sub.add_parser("expire", help="the daily run: activate purchases past their hold, expire lots, tiers")
    expire.add_argument("--now", help="as if it were this time (ISO 8601; default: now)")
    key = sub.add_parser("key", help="make a checkout API key (loyalty scope) for one of the merchant's operators")
    key.add_argument("--merchant", required=True)
    key.add_argument("--email", required=True, help="the operator user's email")
    liability = sub.add_parser("liability", help="outstanding points and their value, by month of expiry")
    liability.add_argument("--merchant", required=True)


async def _merchant(conn: asyncpg.Connection, slug: str) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT id, currency FROM merchants WHERE slug = $1", slug)
    if row is None:
        raise LoyaltyError("not_found", f"no merchant {slug!r}")
    return row


async def run(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    try:
        print(await _run(conn, args))
        return 0
    except LoyaltyError as exc:
        print(f"clickmint: {exc.code}: {exc.detail}", file=sys.stderr)
        return 1


async def _run(conn: asyncpg.Connection, args: argparse.Namespace) -> str:
    command = args.loyalty_command
    if command == "expire":
        now = dt.datetime.fromisoformat(args.now) if args.now else dt.datetime.now(dt.UTC)
        done = await ledger.daily(conn, now if now.tzinfo else now.replace(tzinfo=dt.UTC))
        return ", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in done.items())
    merchant = await _merchant(conn, args.merchant)
    if command == "enable":
        return await _enable(conn, merchant, args)
    if command == "disable":
        await conn.execute("UPDATE loyalty_programmes SET enabled = false, updated_at = now() WHERE merchant_id = $1",
                           merchant["id"])  # fmt: skip
        return f"loyalty off for {args.merchant} (balances kept)"
    prog = await ledger.programme_of(conn, merchant["id"])
    if command == "balance":
        view = await ledger.member_summary(conn, prog, args.customer, history=10)
        return orjson.dumps(view, default=str, option=orjson.OPT_INDENT_2).decode()
    if command == "adjust":
        balance = await ledger.adjust(conn, prog, args.customer, args.points, args.reason, args.by)
        return f"{args.customer}: {args.points:+d} points ({args.reason}); balance {balance}"
    if command == "key":
        return await _key(conn, merchant["id"], args.email)
    rows = await ledger.liability(conn, prog)
    lines = [f"{'expires':<8} {'points':>14} {'value (minor ' + prog.currency + ')':>22}"]
    lines += [f"{r['expires'] or 'never':<8} {r['points']:>14,} {r['value_minor']:>22,}" for r in rows]
    total = sum(r["points"] for r in rows)
    lines.append(f"{'total':<8} {total:>14,} {prog.discount_minor(total):>22,}")
    return "\n".join(lines)


async def _enable(conn: asyncpg.Connection, merchant: asyncpg.Record, args: argparse.Namespace) -> str:
    changes: dict[str, Any] = {"enabled": True}
    for name, column in (("value_points", "value_points"), ("value_minor", "value_minor"),
                         ("min_points", "redeem_min_points"), ("max_percent", "redeem_max_percent"),
                         ("refund_policy", "refund_policy"), ("expiry_days", "expiry_days")):  # fmt: skip
        if getattr(args, name) is not None:
            changes[column] = getattr(args, name)
    for name in ("rules", "tiers", "referral"):
        raw = getattr(args, name)
        if raw is not None:
            try:
                changes[name] = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise LoyaltyError("invalid_json", f"--{name} is not JSON: {exc}") from exc
    prog = await save_programme(conn, merchant["id"], changes)
    expiry = f"{prog.expiry_days} days" if prog.expiry_days else "never"
    return (
        f"loyalty on for merchant {merchant['id']}: {prog.value_points} points = {prog.value_minor} minor units of "
        f"{prog.currency}; expiry {expiry}; refunds of spent points: {prog.refund_policy}; "
        f"{len(prog.tiers.levels)} tiers"
    )


async def _key(conn: asyncpg.Connection, merchant_id: int, email: str) -> str:
    from portal import passwords

    user_id = await conn.fetchval(
        "SELECT id FROM users WHERE email = $1 AND role = 'operator' AND merchant_id = $2 AND status = 'active'",
        email,
        merchant_id,
    )
    if user_id is None:
        raise LoyaltyError("not_found", f"no active operator {email} of this merchant")
    key, prefix, digest = passwords.new_api_key()
    await conn.execute(
        """INSERT INTO api_keys (user_id, prefix, secret_sha256, name, scopes)
           VALUES ($1, $2, $3, 'checkout (loyalty)', ARRAY['loyalty'])""",
        user_id,
        prefix,
        digest,
    )
    return f"checkout key (shown once): {key}"
