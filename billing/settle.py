"""`clickmint settle --period YYYY-MM`: approve, write ledger lines, fill statements, close ended periods."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

import asyncpg

from billing import ledger, statements
from billing.plans import load_terms

SETTLE_LOCK = 0x736574746C65  # "settle": one settle at a time per database


@dataclass
class SettleReport:
    period: str
    ledger: ledger.LedgerReport = field(default_factory=ledger.LedgerReport)
    statements: statements.StatementReport = field(default_factory=statements.StatementReport)
    seconds: float = 0.0

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.ledger.per_kind.items())) or "none"
        return (
            f"settled {self.period} in {self.seconds:.2f}s: {self.ledger.approved} conversions approved, "
            f"{self.ledger.rejected_refunded} rejected as refunded, {self.ledger.lines} ledger lines ({kinds}), "
            f"{self.ledger.reversals} reversals; statements: {self.statements.opened} opened, "
            f"{self.statements.assigned} lines assigned, {self.statements.closed} closed"
            + (f", {self.statements.converted} lines converted" if self.statements.converted else "")
            + (
                f"; WARNING {self.statements.unconverted} lines stay in their own currency: no rate to the "
                "partner's currency (add one with `clickmint admin rate add`)"
                if self.statements.unconverted
                else ""
            )
        )


async def settle(
    conn: asyncpg.Connection, period: str, now: dt.datetime | None = None, close: bool | None = None
) -> SettleReport:
    """Settle one month in one transaction. `close` defaults to: the period has ended."""
    started = time.perf_counter()
    now = now or dt.datetime.now(dt.UTC)
    start, end = statements.month_bounds(period)
    start_at = dt.datetime.combine(start, dt.time(), dt.UTC)
    end_at = dt.datetime.combine(end, dt.time(), dt.UTC)
    if close is None:
        close = now >= end_at
    report = SettleReport(period)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SETTLE_LOCK)
        terms = await load_terms(conn)
        await ledger.approve(conn, now, end_at, report.ledger, report.statements)
        await ledger.reverse_refunds(conn, report.ledger)
        await ledger.pay_traffic(conn, terms, start_at, min(end_at, now), report.ledger, report.statements)
        await ledger.pay_views_per_mille(conn, terms, start, end, report.ledger)
        await statements.convert(conn, end, now, report.statements)
        await statements.assign(conn, end, report.statements)
        if close:
            await statements.close_period(conn, start, now, report.statements)
    report.seconds = time.perf_counter() - started
    return report
