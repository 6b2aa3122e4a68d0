"""`clickmint payouts`: export a month's payout batch (SEPA pain.001 or PayPal CSV), write a recorded batch's
file again, mark a batch paid, cancel one, list them. The same rules as the operator API (docs/payouts.md)."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
from pathlib import Path

import asyncpg

from billing import payout_files, payouts
from kernel.money import format_amount
from kernel.sealed import Sealer

ACTOR = payouts.Actor("cli")


def add_args(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    export = sub.add_parser(
        "export",
        help="make (and record) the batch of a month's closed, payable, unpaid statements and write its file",
        description="Takes the closed, payable, unpaid statements of the month. sepa: EUR statements of partners "
        "paid by SEPA transfer, as an ISO 20022 pain.001 credit transfer from the merchant's payout IBAN, checked "
        "against its schema. paypal: statements of partners paid through PayPal, in one currency, as a PayPal "
        "Payouts CSV (no header row: recipient e-mail, amount, currency, statement number, note, PAYPAL). Every "
        "statement left out is listed with its reason on stderr. When nothing new is payable, the open batch of "
        "the same month and format is written again (the same bytes).",
    )
    export.add_argument("--merchant", required=True, help="the merchant's slug")
    export.add_argument("--period", required=True, help="the statements' month, YYYY-MM")
    export.add_argument("--format", required=True, choices=payouts.FORMATS)
    export.add_argument(
        "--schema",
        choices=payout_files.SEPA_SCHEMAS,
        help=f"sepa: the pain.001 version (default {payout_files.DEFAULT_SEPA_SCHEMA})",
    )
    export.add_argument("--currency", help="paypal: the file's currency (default: the merchant's)")
    export.add_argument(
        "--execution-date", type=dt.date.fromisoformat, help="sepa: requested execution date, YYYY-MM-DD (today)"
    )
    export.add_argument("-o", "--output", required=True, help="the file to write ('-': stdout)")
    file_ = sub.add_parser("file", help="write a recorded batch's file again (the same bytes)")
    file_.add_argument("batch", help="the batch id, e.g. PB-2026-11-000001")
    file_.add_argument("-o", "--output", required=True, help="the file to write ('-': stdout)")
    paid = sub.add_parser("paid", help="mark every statement of a batch paid, in one transaction")
    paid.add_argument("batch", help="the batch id")
    cancel = sub.add_parser("cancel", help="cancel an open batch (never sent): its statements may be batched again")
    cancel.add_argument("batch", help="the batch id")
    listing = sub.add_parser("list", help="the recorded batches, newest first")
    listing.add_argument("--merchant", help="only this merchant's (slug)")


async def _write(data: bytes, output: str) -> None:
    if output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        await asyncio.to_thread(Path(output).write_bytes, data)


async def run(args: argparse.Namespace, conn: asyncpg.Connection, secret_key: str) -> int:
    """One `clickmint payouts` action; refusals are printed and answered with exit code 1 (2: bad arguments)."""
    sealer = Sealer(secret_key)
    try:
        if args.action == "export":
            merchant_id = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", args.merchant)
            if merchant_id is None:
                print(f"clickmint: no merchant {args.merchant!r}", file=sys.stderr)
                return 2
            if args.schema and args.format != "sepa":
                print("clickmint: --schema is for --format sepa", file=sys.stderr)
                return 2
            try:
                batch = await payouts.export(
                    conn,
                    sealer,
                    merchant_id,
                    args.period,
                    args.format,
                    actor=ACTOR,
                    schema=args.schema,
                    currency=args.currency.upper() if args.currency else None,
                    execution=args.execution_date,
                )
            except payouts.PayoutError as exc:
                _left_out(exc.left_out)
                raise
            await _write(batch.data, args.output)
            what = "again (no new payable statement)" if batch.reused else "made"
            print(
                f"batch {batch.id} {what}: {batch.count} payments, {format_amount(batch.total_minor, batch.currency)}"
                f" {batch.currency}, {batch.schema}" + ("" if args.output == "-" else f", written to {args.output}"),
                file=sys.stderr,
            )
            _left_out(batch.left_out)
        elif args.action == "file":
            batch = await payouts.load(conn, sealer, args.batch)
            await _write(batch.data, args.output)
            print(f"batch {batch.id} ({batch.status}) written", file=sys.stderr)
        elif args.action == "paid":
            numbers = await payouts.mark_paid(conn, args.batch, ACTOR)
            print(f"batch {args.batch} paid: {len(numbers)} statements marked paid ({', '.join(numbers)})")
        elif args.action == "cancel":
            await payouts.cancel(conn, args.batch, ACTOR)
            print(f"batch {args.batch} cancelled: its statements may go into another batch")
        else:
            merchant_id = None
            if args.merchant:
                merchant_id = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", args.merchant)
                if merchant_id is None:
                    print(f"clickmint: no merchant {args.merchant!r}", file=sys.stderr)
                    return 2
            for row in await payouts.batches(conn, merchant_id):
                print(
                    f"{row['id']}  {row['period']}  {row['format']:6}  {row['status']:9}  {row['count']:5} payments"
                    f"  {format_amount(row['total_minor'], row['currency'])} {row['currency']}"
                )
    except payouts.PayoutError as exc:
        print(f"clickmint: {exc.detail} ({exc.code})", file=sys.stderr)
        return 1
    return 0


def _left_out(items: list[dict]) -> None:
    for item in items:
        amount = format_amount(item["total_minor"], item["currency"]) if item["total_minor"] is not None else "-"
        print(
            f"  left out {item['statement']} ({amount} {item['currency']}): {item['reason']}, {item['detail']}",
            file=sys.stderr,
        )
