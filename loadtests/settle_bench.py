"""`python -m loadtests.bench settle`: settle 1,000,000 conversions for 10,000 partners, then close the month.

The conversions are made directly in SQL (past their hold, 10% of sale each), then settle approves
them, writes a ledger line each, fills one statement per partner and closes the period. Baseline in
the same run: a bare INSERT .. SELECT of as many rows into a table shaped like the ledger, the least
any settle that writes a line per conversion must pay.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import time

import asyncpg

from billing.settle import settle
from loadtests.report import finish
from loadtests.servers import Servers


async def _seed(db: asyncpg.Connection, conversions: int, partners: int, month: dt.date) -> None:
    await db.execute("INSERT INTO merchants (slug, name, currency) VALUES ('settle-bench', 'Bench', 'USD')")
    await db.execute(
        """INSERT INTO offers (merchant_id, name, destination_url, currency, fee_plan, hold_days)
           VALUES (1, 'Bench', 'https://shop.example.com/', 'USD', '{"cps_percent": "10"}', 0)"""
    )
    await db.execute(
        """INSERT INTO partners (name, email, min_payout_minor)
           SELECT 'Partner ' || g, 'p' || g || '@bench.example', 5000 FROM generate_series(1, $1) g""",
        partners,
    )
    start = dt.datetime.combine(month, dt.time(), dt.UTC)
    await db.execute(
        """INSERT INTO conversions (event_id, ts, kind, merchant_id, offer_id, partner_id, order_id, amount_minor,
                                    currency, status, hold_until)
           SELECT (lpad(to_hex((extract(epoch FROM t.ts) * 1000)::bigint), 12, '0') || '7' || substr(md5(g::text), 1, 3)
                   || '8' || substr(md5(g::text), 4, 15))::uuid,  -- a UUIDv7 of its time, as the tracker makes
                  t.ts, 'purchase', 1, 1,
                  1 + g % $3,
                  'o' || g, 1000 + (g::bigint * 7919) % 90000, 'USD', 'pending', $2::timestamptz
           FROM generate_series(1, $1) g,
                LATERAL (SELECT $2::timestamptz + (g % 2419200) * interval '1 second' AS ts) t""",
        conversions,
        start,
        partners,
    )
    await db.execute(
        """INSERT INTO commissions (event_id, kind, amount_minor, currency, basis)
           SELECT event_id, 'cps', round(amount_minor / 10.0), 'USD', '10% of sale' FROM conversions"""
    )
    await db.execute("ANALYZE")


async def bench(servers: Servers, conversions: int, partners: int) -> dict[str, float | int]:
    db = await asyncpg.connect(servers.database_url)
    month = dt.date(2026, 1, 1)
    started = time.perf_counter()
    await _seed(db, conversions, partners, month)
    seed_s = time.perf_counter() - started

    await db.execute("CREATE TABLE bench_lines (LIKE ledger_lines INCLUDING DEFAULTS)")
    started = time.perf_counter()
    await db.execute(
        """INSERT INTO bench_lines (id, source, kind, merchant_id, partner_id, offer_id, currency, amount_minor, basis,
                                    occurred_at)
           SELECT g, g::text, 'cps', 1, 1, 1, 'USD', 1, 'x', now() FROM generate_series(1, $1) g""",
        conversions,
    )
    baseline_s = time.perf_counter() - started
    await db.execute("DROP TABLE bench_lines")

    report = await settle(db, "2026-01", now=dt.datetime(2026, 2, 1, 1, tzinfo=dt.UTC), close=False)
    close = await settle(db, "2026-01", now=dt.datetime(2026, 2, 1, 2, tzinfo=dt.UTC), close=True)
    lines = await db.fetchval("SELECT count(*) FROM ledger_lines")
    total = await db.fetchval("SELECT sum(amount_minor) FROM ledger_lines")
    statements_total = await db.fetchval("SELECT sum(total_minor) FROM statements")
    closed = await db.fetchval("SELECT count(*) FROM statements WHERE status = 'closed'")
    await db.close()
    assert lines == conversions and total == statements_total and closed == partners, "settle lost or doubled money"
    return {
        "conversions": conversions,
        "partners": partners,
        "seed_s": round(seed_s, 1),
        "settle_s": round(report.seconds, 2),
        "close_s": round(close.seconds, 2),
        "settle_and_close_s": round(report.seconds + close.seconds, 2),
        "ledger_lines": lines,
        "statements_closed": closed,
        "baseline_insert_s": round(baseline_s, 2),
        "baseline_ratio": round(baseline_s / (report.seconds + close.seconds), 3),
    }


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench settle")
    parser.add_argument("--conversions", type=int, default=1_000_000)
    parser.add_argument("--partners", type=int, default=10_000)
    args = parser.parse_args(argv)
    servers = Servers.open()
    try:
        figures = asyncio.run(bench(servers, args.conversions, args.partners))
    finally:
        servers.close()
    rows = [
        ("settle (approve, ledger lines, statements)", f"{figures['settle_s']} s", ""),
        (
            "close the month (totals, carry-over)",
            f"{figures['close_s']} s",
            f"{figures['statements_closed']} statements",
        ),
        (
            "baseline: bare INSERT of as many lines",
            f"{figures['baseline_insert_s']} s",
            f"ratio {figures['baseline_ratio']}",
        ),
    ]
    title = f"settle of {args.conversions:,} conversions for {args.partners:,} partners ({servers.postgres_where})"
    return finish(title, rows, figures)
