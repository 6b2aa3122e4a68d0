"""`clickmint purge customer` covers loyalty: no trace of the customer id in any loyalty table or stored
checkout answer; every balance, lot and entry total stays as it was, under the tombstone."""

from __future__ import annotations

import datetime as dt

import asyncpg

from billing import loyalty_ledger as ledger
from billing import loyalty_redeem as redeem
from billing import privacy
from billing.derive import Deriver
from tests.integration.test_privacy_purge import _dump
from tests.loyalty_kit import check_invariants, ingest, sale, shop

SECRET = "alice-7f3e@example.com"


async def test_purge_customer_covers_loyalty(db: asyncpg.Connection) -> None:
    prog = await shop(db, hold_days=0)
    deriver = Deriver()
    await ingest(db, deriver, sale(prog, SECRET, "A-1", 50_000), sale(prog, "bob", "B-1", 20_000))
    await ledger.activate_due(db, dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    loyalty = await ledger.programme_of(db, prog.merchant_id)
    await redeem.reserve(db, loyalty, SECRET, "A-2", 100)
    await db.execute(  # an answer stored for an Idempotency-Key names the customer
        """INSERT INTO loyalty_idempotency (merchant_id, key, request_sha256, status, response)
           VALUES ($1, 'k', 'x', 201, $2::jsonb)""",
        prog.merchant_id,
        f'{{"customer": "{SECRET}", "points": 100}}',
    )
    before = await check_invariants(db)
    totals = await db.fetchrow("SELECT sum(points) AS p, count(*) AS n FROM loyalty_entries")
    assert SECRET in await _dump(db)
    slug = await db.fetchval("SELECT slug FROM merchants WHERE id = $1", prog.merchant_id)
    report = await privacy.purge_customer(db, slug, SECRET, requested_by="T-9")
    assert report.counts["loyalty_members"] == 1 and report.counts["loyalty_checkout_answers"] == 1
    assert SECRET not in await _dump(db)
    after = await check_invariants(db)
    assert sorted(after.values()) == sorted(before.values())
    assert after[(prog.merchant_id, report.tombstone)] == before[(prog.merchant_id, SECRET)]
    assert tuple(await db.fetchrow("SELECT sum(points) AS p, count(*) AS n FROM loyalty_entries")) == tuple(totals)
    assert await db.fetchval("SELECT customer_ref FROM loyalty_redemptions") == report.tombstone
