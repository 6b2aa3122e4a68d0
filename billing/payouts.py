"""Payout batches: the closed, payable, unpaid statements of a merchant's month as one SEPA or PayPal file.

A batch is recorded with its statements and its file (sealed: it holds IBANs), so exporting it again gives the
same bytes. A statement is in at most one open batch (a unique index). `mark_paid` marks every statement of a
batch paid in one transaction; `cancel` frees them for another batch. What is left out is listed with why.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from billing import payout_files
from billing.payout_files import Payer, Payment
from billing.statements import month_bounds
from kernel.sealed import Sealer

FORMATS = ("sepa", "paypal")


@dataclass(frozen=True)
class Actor:
    """Who acts, for the audit log: a portal user, or the command line (no user id)."""

    email: str
    user_id: int | None = None


# Why a statement of the period is not in the batch (machine-readable code -> words).
REASONS = {
    "not_closed": "the statement is still open",
    "already_paid": "already paid",
    "below_minimum": "below the partner's minimum payout (the balance carries over)",
    "nothing_to_pay": "nothing to pay",
    "no_payout_details": "the partner has given no payout details for this programme",
    "other_method": "the partner is paid by another method",
    "other_currency": "in another currency than the file's",
    "in_open_batch": "already in an open batch",
}


class PayoutError(ValueError):
    """A batch that cannot be made, found or changed; `code` is machine-readable."""

    def __init__(self, code: str, detail: str, left_out: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.left_out = left_out or []  # nothing_to_pay: every statement of the month and why it is not payable


@dataclass
class Batch:
    id: str
    merchant_id: int
    period: str
    format: str
    schema: str
    currency: str
    count: int
    total_minor: int
    status: str
    data: bytes = field(repr=False, default=b"")
    statements: list[str] = field(default_factory=list)
    left_out: list[dict[str, Any]] = field(default_factory=list)
    reused: bool = False  # an open batch of the same month and format, exported again

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "merchant_id": self.merchant_id,
            "period": self.period,
            "format": self.format,
            "schema": self.schema,
            "currency": self.currency,
            "count": self.count,
            "total_minor": self.total_minor,
            "status": self.status,
            "statements": self.statements,
            "reused": self.reused,
        }


async def _audit(
    conn: asyncpg.Connection, actor: Actor, merchant_id: int, action: str, batch_id: str, detail: dict[str, Any]
) -> None:
    """An audit row in the transaction that made the change (the portal's log: who, what, when)."""
    await conn.execute(
        """INSERT INTO audit_log (actor_user_id, actor_email, merchant_id, action, object_type, object_id, detail)
           VALUES ($1, $2, $3, $4, 'payout_batch', $5, $6)""",
        actor.user_id,
        actor.email,
        merchant_id,
        action,
        batch_id,
        orjson.dumps(detail).decode(),
    )


def sealed_where(merchant_id: int, partner_id: int, name: str) -> str:
    """The associated data a payout detail is sealed with: it opens only on its own row."""
    return f"payout_details:{merchant_id}:{partner_id}:{name}"


def _batch_where(batch_id: str) -> str:
    return f"payout_batch:{batch_id}"


_CANDIDATES = """
SELECT s.id, s.number, s.partner_id, s.currency, s.status, s.payable, s.total_minor,
       s.total_minor + coalesce(inv.vat_minor, 0) AS pay_minor,
       d.method, d.legal_name, d.iban_sealed, d.bic, d.paypal_email,
       EXISTS (SELECT 1 FROM payout_batch_items i WHERE i.statement_id = s.id AND i.open) AS batched
FROM statements s
LEFT JOIN partner_payout_details d ON d.merchant_id = s.merchant_id AND d.partner_id = s.partner_id
LEFT JOIN self_billed_invoices inv ON inv.statement_id = s.id  -- self-billed: the invoice's gross is paid
WHERE s.merchant_id = $1 AND s.period_start = $2
ORDER BY s.number
FOR UPDATE OF s"""


def _why_not(row: asyncpg.Record, fmt: str, currency: str) -> str | None:
    if row["status"] == "open":
        return "not_closed"
    if row["status"] == "paid":
        return "already_paid"
    if (row["total_minor"] or 0) <= 0:
        return "nothing_to_pay"
    if not row["payable"]:
        return "below_minimum"
    if row["batched"]:
        return "in_open_batch"
    if row["method"] is None:
        return "no_payout_details"
    if row["method"] != fmt:
        return "other_method"
    if row["currency"] != currency:
        return "other_currency"
    return None


async def export(
    conn: asyncpg.Connection,
    sealer: Sealer,
    merchant_id: int,
    period: str,
    fmt: str,
    *,
    actor: Actor,
    schema: str | None = None,
    currency: str | None = None,
    now: dt.datetime | None = None,
    execution: dt.date | None = None,
) -> Batch:
    """Make (and record) the batch of the month's payable statements, in one transaction. When nothing new is
    payable but an open batch of the same month, format and schema exists, that batch is exported again."""
    if fmt not in FORMATS:
        raise PayoutError("invalid_format", f"format must be one of {', '.join(FORMATS)}")
    try:
        start, _ = month_bounds(period)
    except (ValueError, OverflowError) as exc:
        raise PayoutError("invalid_period", f"a period is a month written YYYY-MM, not {period!r}") from exc
    if fmt == "sepa":
        schema = schema or payout_files.DEFAULT_SEPA_SCHEMA
        if schema not in payout_files.SEPA_SCHEMAS:
            raise PayoutError("invalid_schema", f"schema must be one of {', '.join(payout_files.SEPA_SCHEMAS)}")
        if currency not in (None, "EUR"):
            raise PayoutError("invalid_currency", "a SEPA credit transfer is in EUR")
        currency = "EUR"
    else:
        if schema not in (None, payout_files.PAYPAL_SCHEMA):
            raise PayoutError("invalid_schema", "a PayPal batch has no schema version to choose")
        schema = payout_files.PAYPAL_SCHEMA
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        merchant = await conn.fetchrow(
            "SELECT id, name, legal_name, currency, payout_iban, payout_bic FROM merchants WHERE id = $1 FOR UPDATE",
            merchant_id,
        )
        if merchant is None:
            raise PayoutError("not_found", "no such merchant")
        currency = currency or merchant["currency"]
        rows = await conn.fetch(_CANDIDATES, merchant_id, start)
        chosen, left_out = [], []
        for row in rows:
            reason = _why_not(row, fmt, currency)
            if reason is None:
                chosen.append(row)
            else:
                left_out.append(
                    {
                        "statement": row["number"],
                        "partner_id": row["partner_id"],
                        "currency": row["currency"],
                        "total_minor": row["total_minor"],
                        "reason": reason,
                        "detail": REASONS[reason],
                    }
                )
        if not chosen:
            again = await conn.fetchval(
                """SELECT id FROM payout_batches WHERE merchant_id = $1 AND period_start = $2 AND format = $3
                   AND schema_version = $4 AND currency = $5 AND status = 'open' ORDER BY created_at DESC LIMIT 1""",
                merchant_id,
                start,
                fmt,
                schema,
                currency,
            )
            if again is None:
                raise PayoutError("nothing_to_pay", f"no statement of {period} can go into a {fmt} batch", left_out)
            batch = await load(conn, sealer, again, merchant_id)
            batch.left_out = [item for item in left_out if item["reason"] != "in_open_batch"]
            batch.reused = True
            return batch
        number = await conn.fetchval("SELECT nextval('payout_batch_numbers')")
        batch_id = f"PB-{start:%Y-%m}-{number:06d}"
        payments = [_payment(sealer, merchant_id, merchant["name"], period, row) for row in chosen]
        try:
            if fmt == "sepa":
                payer = Payer(
                    merchant["legal_name"] or merchant["name"], merchant["payout_iban"], merchant["payout_bic"]
                )
                data = payout_files.sepa(batch_id, now, execution or now.date(), payer, payments, schema)
            else:
                data = payout_files.paypal(payments)
        except payout_files.PayoutFileError as exc:
            raise PayoutError("invalid_payout_file", str(exc)) from exc
        total = sum(p.amount_minor for p in payments)
        await conn.execute(
            """INSERT INTO payout_batches (id, merchant_id, period_start, format, schema_version, currency, count,
                                           total_minor, file_sealed, file_sha256, created_by, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)""",
            batch_id,
            merchant_id,
            start,
            fmt,
            schema,
            currency,
            len(payments),
            total,
            sealer.seal(data, _batch_where(batch_id)),
            hashlib.sha256(data).hexdigest(),
            actor.email,
            now,
        )
        await conn.executemany(
            "INSERT INTO payout_batch_items (batch_id, statement_id, amount_minor) VALUES ($1, $2, $3)",
            [(batch_id, row["id"], row["pay_minor"]) for row in chosen],
        )
        await _audit(
            conn,
            actor,
            merchant_id,
            "create_payout_batch",
            batch_id,
            {"count": len(payments), "total_minor": total, "currency": currency, "format": fmt, "schema": schema},
        )
        return Batch(
            batch_id,
            merchant_id,
            period,
            fmt,
            schema,
            currency,
            len(payments),
            total,
            "open",
            data,
            [row["number"] for row in chosen],
            left_out,
        )


def _payment(sealer: Sealer, merchant_id: int, merchant_name: str, period: str, row: asyncpg.Record) -> Payment:
    iban = None
    if row["iban_sealed"] is not None:
        iban = sealer.open_text(row["iban_sealed"], sealed_where(merchant_id, row["partner_id"], "iban"))
    month = dt.datetime.strptime(period, "%Y-%m").strftime("%B %Y")
    return Payment(
        reference=row["number"],
        name=row["legal_name"],
        amount_minor=row["pay_minor"],
        currency=row["currency"],
        note=f"Commission from {merchant_name}, {month}, statement {row['number']}",
        iban=iban,
        bic=row["bic"],
        paypal_email=row["paypal_email"],
    )


async def load(conn: asyncpg.Connection, sealer: Sealer, batch_id: str, merchant_id: int | None = None) -> Batch:
    """A recorded batch and its file (the same bytes as when it was made; checked against its SHA-256).
    `merchant_id`: only that merchant's batch (another's is not found)."""
    row = await conn.fetchrow("SELECT * FROM payout_batches WHERE id = $1", batch_id)
    if row is None or (merchant_id is not None and row["merchant_id"] != merchant_id):
        raise PayoutError("not_found", f"no payout batch {batch_id}")
    data = sealer.open(row["file_sealed"], _batch_where(batch_id))
    if hashlib.sha256(data).hexdigest() != row["file_sha256"]:
        raise PayoutError("corrupt", f"payout batch {batch_id}: its file does not match its SHA-256")
    numbers = await conn.fetch(
        """SELECT s.number FROM payout_batch_items i JOIN statements s ON s.id = i.statement_id
           WHERE i.batch_id = $1 ORDER BY s.number""",
        batch_id,
    )
    return Batch(
        row["id"],
        row["merchant_id"],
        f"{row['period_start']:%Y-%m}",
        row["format"],
        row["schema_version"],
        row["currency"],
        row["count"],
        row["total_minor"],
        row["status"],
        data,
        [r["number"] for r in numbers],
    )


async def batches(conn: asyncpg.Connection, merchant_id: int | None) -> list[dict[str, Any]]:
    """Recorded batches, newest first (a merchant's, or every merchant's)."""
    rows = await conn.fetch(
        """SELECT id, merchant_id, to_char(period_start, 'YYYY-MM') AS period, format, schema_version AS schema,
                  currency, count, total_minor, status, created_by, created_at, closed_at, file_sha256
           FROM payout_batches WHERE $1::bigint IS NULL OR merchant_id = $1 ORDER BY created_at DESC, id DESC""",
        merchant_id,
    )
    return [dict(r) for r in rows]


async def _close(conn: asyncpg.Connection, batch_id: str, merchant_id: int | None) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT id, merchant_id, status FROM payout_batches WHERE id = $1 FOR UPDATE", batch_id)
    if row is None or (merchant_id is not None and row["merchant_id"] != merchant_id):
        raise PayoutError("not_found", f"no payout batch {batch_id}")
    if row["status"] != "open":
        raise PayoutError("conflict", f"payout batch {batch_id} is already {row['status']}")
    return row


async def mark_paid(
    conn: asyncpg.Connection,
    batch_id: str,
    actor: Actor,
    merchant_id: int | None = None,
    now: dt.datetime | None = None,
) -> list[str]:
    """Every statement of the batch paid, and the batch closed, in one transaction; the numbers paid.
    `merchant_id`: only that merchant's batch (another's is not found)."""
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        batch = await _close(conn, batch_id, merchant_id)
        rows = await conn.fetch(
            """SELECT s.id, s.number, s.status FROM payout_batch_items i JOIN statements s ON s.id = i.statement_id
               WHERE i.batch_id = $1 ORDER BY s.id FOR UPDATE OF s""",
            batch_id,
        )
        wrong = [r["number"] for r in rows if r["status"] != "closed"]
        if wrong:
            raise PayoutError("conflict", f"not closed any more: {', '.join(wrong)}")
        await conn.execute(
            "UPDATE statements SET status = 'paid', paid_at = $2 WHERE id = ANY($1::bigint[])",
            [r["id"] for r in rows],
            now,
        )
        await conn.execute("UPDATE payout_batch_items SET open = false WHERE batch_id = $1", batch_id)
        await conn.execute("UPDATE payout_batches SET status = 'paid', closed_at = $2 WHERE id = $1", batch_id, now)
        paid = [r["number"] for r in rows]
        await _audit(conn, actor, batch["merchant_id"], "pay_payout_batch", batch_id, {"paid": paid})
        return paid


async def cancel(
    conn: asyncpg.Connection,
    batch_id: str,
    actor: Actor,
    merchant_id: int | None = None,
    now: dt.datetime | None = None,
) -> None:
    """Give up an open batch (the file was never sent): its statements may go into another."""
    now = now or dt.datetime.now(dt.UTC)
    async with conn.transaction():
        batch = await _close(conn, batch_id, merchant_id)
        await _audit(conn, actor, batch["merchant_id"], "cancel_payout_batch", batch_id, {})
        await conn.execute("UPDATE payout_batch_items SET open = false WHERE batch_id = $1", batch_id)
        await conn.execute(
            "UPDATE payout_batches SET status = 'cancelled', closed_at = $2 WHERE id = $1", batch_id, now
        )
