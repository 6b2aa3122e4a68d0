"""Seed a load-test programme and write its links and offers to a JSON file for the locustfile.

    python -m loadtests.seed --out out/seed.json [--partners 10]

One merchant (slug `loadtest-<random>`, so runs never collide), a CPS offer (purchases) and a CPA
offer (signups), approved partners with one link per offer, inserted with the SQL `clickmint demo`
uses. The database is CLICKMINT_DATABASE_URL, else the one a running `clickmint up` on
CLICKMINT_DATA_DIR owns; it must be migrated already (`clickmint migrate` or `clickmint up`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
from pathlib import Path
from typing import Any

import asyncpg

from clickmint.services import read_run_file
from kernel.env import Env, SettingsError
from kernel.settings import DEFAULT_DATA_DIR

# `{click_id}` in the destination puts the click id in the Location header, where the locustfile reads it.
# The load mix fires its purchases from the browser pixel: the sale offer allows that (off by default, since any
# visitor can fire a pixel; docs/conversion-sources.md).
PIXEL_SALES = '{"pixel": ["action", "purchase"], "cookie": ["action", "purchase"]}'
OFFERS: tuple[tuple[str, str, str], ...] = (
    ("cps", "Load test: 10% of every order", '{"cps_percent": "10"}'),
    ("cpa", "Load test: 2.50 per signup", '{"cpa": {"signup": 250}}'),
)
DESTINATION = "https://shop.example.com/landing?cid={click_id}&aff={partner_id}&s1={sub1}"
CURRENCY = "USD"


async def seed(dsn: str, partners: int) -> dict[str, Any]:
    """Insert the programme in one transaction; returns what the locustfile needs."""
    tag = secrets.token_hex(4)
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            merchant = await conn.fetchval(
                "INSERT INTO merchants (slug, name, currency) VALUES ($1, $2, $3) RETURNING id",
                f"loadtest-{tag}",
                f"Load test {tag}",
                CURRENCY,
            )
            offers = []
            for kind, name, plan in OFFERS:
                offer = await conn.fetchval(
                    """INSERT INTO offers (merchant_id, name, destination_url, allowed_hosts, currency, fee_plan,
                                           hold_days, attribution_window_s, conversion_sources)
                       VALUES ($1, $2, $3, $4, $5, $6, 14, 2592000, $7) RETURNING id""",
                    merchant,
                    name,
                    DESTINATION,
                    ["shop.example.com"],
                    CURRENCY,
                    plan,
                    PIXEL_SALES if kind == "cps" else "{}",
                )
                offers.append({"id": offer, "kind": kind, "currency": CURRENCY})
            links = []
            for number in range(partners):
                partner = await conn.fetchval(
                    "INSERT INTO partners (name, email) VALUES ($1, $2) RETURNING id",
                    f"Load partner {number}",
                    f"load-{tag}-{number}@partners.example",
                )
                await conn.execute(
                    "INSERT INTO partner_programmes (partner_id, merchant_id, status) VALUES ($1, $2, 'approved')",
                    partner,
                    merchant,
                )
                for offer in offers:
                    code = secrets.token_urlsafe(8)
                    link = await conn.fetchval(
                        "INSERT INTO links (code, partner_id, offer_id) VALUES ($1, $2, $3) RETURNING id",
                        code,
                        partner,
                        offer["id"],
                    )
                    links.append({"id": link, "code": code, "offer_id": offer["id"], "partner_id": partner})
    finally:
        await conn.close()
    return {"merchant_id": merchant, "merchant_slug": f"loadtest-{tag}", "offers": offers, "links": links}


def database_url(env: Env) -> str:
    """CLICKMINT_DATABASE_URL, else the database of a running `clickmint up` (no secret is read or made)."""
    dsn = env.url("DATABASE_URL", ("postgres", "postgresql"))
    if dsn is not None:
        return dsn
    data_dir = Path(env.str("DATA_DIR", DEFAULT_DATA_DIR)).expanduser().absolute()
    info = read_run_file(data_dir)
    if info is None:
        raise SettingsError(f"set CLICKMINT_DATABASE_URL, or start `clickmint up` on {data_dir}")
    return str(info["database_url"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.seed", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="JSON file to write (its directory is created)")
    parser.add_argument("--partners", type=int, default=10, help="approved partners, each with a link per offer")
    args = parser.parse_args(argv)
    if args.partners < 1:
        parser.error("--partners must be at least 1")

    try:
        dsn = database_url(Env())
    except SettingsError as exc:
        print(f"loadtests.seed: {exc}", file=sys.stderr)
        return 2
    seeded = asyncio.run(seed(dsn, args.partners))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(seeded, indent=2) + "\n")
    print(
        f"seeded merchant {seeded['merchant_slug']}: {len(seeded['offers'])} offers, "
        f"{len(seeded['links'])} links -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
