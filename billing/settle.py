"""`clickmint settle --period YYYY-MM`: approve, write ledger lines, fill statements, close ended periods."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import asyncpg

from billing import ledger, review, statements, traffic
from billing.plans import load_terms
from kernel.sealed import Sealer

SETTLE_LOCK = 0x736574746C65  # "settle": one settle at a time per database


@dataclass
class SettleReport:
    period: str
    ledger: ledger.LedgerReport = field(default_factory=ledger.LedgerReport)
    statements: statements.StatementReport = field(default_factory=statements.StatementReport)
    seconds: float = 0.0
    holds_expired: dict[str, int] = field(
        default_factory=dict
    )  # held conversions whose hold expired: approved, rejected

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
    conn: asyncpg.Connection,
    period: str,
    now: dt.datetime | None = None,
    close: bool | None = None,
    progress: Callable[[str], None] | None = None,
    sealer: Sealer | None = None,
) -> SettleReport:
    """Settle one month in one transaction. `close` defaults to: the period has ended. `progress` is
    told each step as it ends (a long run is otherwise silent until it commits). `sealer` opens partners'
    sealed VAT numbers for self-billed invoices (billing/invoices.py)."""
    started = time.perf_counter()
    step_started = started

    def step(done: str) -> None:
        nonlocal step_started
        if progress is not None:
            now_s = time.perf_counter()
            progress(f"  {done} ({now_s - step_started:.1f} s)")
            step_started = now_s

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
        lines, got = report.ledger, report.statements
        report.holds_expired = await review.expire(conn, now)  # before approval: an approved hold then follows
        await ledger.approve(conn, now, end_at, lines, got)
        step(f"conversions approved: {lines.approved:,}, rejected as refunded: {lines.rejected_refunded:,};"
             f" commission lines: {lines.lines:,}; statements opened: {got.opened:,}")  # fmt: skip
        before = lines.lines
        await ledger.reverse_refunds(conn, lines)
        step(f"refund reversals: {lines.reversals:,}")
        await traffic.pay_traffic(conn, terms, start_at, min(end_at, now), lines, got)
        step(f"cpc, cpv and cpm lines (one per offer, day and rate): {lines.lines - before:,}")
        await statements.convert(conn, end, now, got)
        await statements.assign(conn, end, got)
        step(f"lines in statements: {got.assigned:,} (converted to the partner's currency: {got.converted:,})")
        if close:
            await statements.close_period(conn, start, now, got, sealer)
            step(f"statements closed: {got.closed:,}")
    report.seconds = time.perf_counter() - started
    return report
