"""The `clickmint` command: up, migrate, demo, ingest, tracker, portal."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg

from clickmint.embedded import port_is_free
from kernel.env import SettingsError, redact
from kernel.errors import ClickmintError
from kernel.logs import setup as setup_logging
from kernel.settings import Settings


def _uvicorn(app: str, host: str, port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--factory",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--no-proxy-headers",  # forwarding headers only from CLICKMINT_TRUSTED_PROXIES, read by the app itself
        "--log-level",
        "warning",
        "--timeout-graceful-shutdown",
        "10",
    ]


def _wait_http(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.1)
    return False


def cmd_up(args: argparse.Namespace) -> int:
    """Everything on this machine: servers (embedded when unconfigured), migrations, tracker, ingest, portal."""
    from clickmint.migrate import migrate
    from clickmint.services import read_run_file, services, write_run_file
    from clickmint.supervisor import Part, Supervisor
    from kernel import metrics
    from kernel.preflight import check_redis

    settings = Settings.from_env()
    running = read_run_file(settings.data_dir)
    if running is not None:
        print(f"clickmint: already up on {settings.data_dir} (pid {running['pid']})", file=sys.stderr)
        return 1
    for name, port in (("tracker", settings.tracker_port), ("portal", settings.portal_port)):
        if not port_is_free(port, settings.host):
            var = f"CLICKMINT_{name.upper()}_PORT"
            print(f"clickmint: port {port} for the {name} is taken; free it or set {var}", file=sys.stderr)
            return 1
    started = time.monotonic()
    with services(settings) as found:
        check_redis(found.redis_url)
        applied = asyncio.run(migrate(found.database_url))
        env = dict(os.environ)
        env.update(
            CLICKMINT_REDIS_URL=found.redis_url,
            CLICKMINT_DATABASE_URL=found.database_url,
            CLICKMINT_DATA_DIR=str(settings.data_dir),
            CLICKMINT_SECRET_KEY=settings.secret_key,
        )
        host = settings.host
        # The tracker's workers share their metrics through files here, emptied at each start (kernel/metrics.py).
        shared = metrics.prepare(settings.data_dir / "metrics" / "tracker")
        parts = [
            Part(
                "tracker",
                _uvicorn("tracker.app:create_app", host, settings.tracker_port, settings.tracker_workers),
                env | {metrics.ENV: str(shared)},
            ),
            *(
                Part(
                    "ingest" if settings.ingest_processes == 1 else f"ingest-{part}",
                    [sys.executable, "-m", "clickmint", "ingest"],
                    env | {"CLICKMINT_INGEST_PART": f"{part}/{settings.ingest_processes}"},
                )
                for part in range(1, settings.ingest_processes + 1)
            ),
            Part("portal", _uvicorn("portal.app:create_app", host, settings.portal_port, 1), env),
        ]
        tracker_url = f"http://{host}:{settings.tracker_port}"
        portal_url = f"http://{host}:{settings.portal_port}"
        write_run_file(
            settings.data_dir,
            {
                "pid": os.getpid(),
                "redis_url": found.redis_url,
                "database_url": found.database_url,
                "tracker": tracker_url,
                "portal": portal_url,
            },
        )
        supervisor = Supervisor(parts, found.started)  # embedded servers it started are restarted when they die

        def announce() -> None:
            ready = _wait_http(tracker_url + "/healthz", 20) and _wait_http(portal_url + "/healthz", 20)
            state = "up" if ready else "starting (slowly)"
            kind = "embedded" if found.embedded else "configured"
            print(
                f"Clickmint is {state} after {time.monotonic() - started:.1f}s\n"
                f"  tracker   {tracker_url}   ({settings.tracker_workers} worker(s), clicks at /c/<link>)\n"
                f"  portal    {portal_url}\n"
                f"  ingest    {settings.shards} stream shard(s) -> PostgreSQL"
                f" ({settings.ingest_processes} process(es))\n"
                f"  redis     {redact(found.redis_url)} ({kind})\n"
                f"  postgres  {redact(found.database_url)} ({kind})\n"
                f"  data      {settings.data_dir}\n"
                f"  migrations applied now: {', '.join(applied) or 'none (up to date)'}\n"
                "Seed a demo programme with `clickmint demo`; stop with Ctrl-C.",
                flush=True,
            )

        try:
            return supervisor.run_with(announce)
        finally:
            (settings.data_dir / "run.json").unlink(missing_ok=True)


def cmd_migrate(args: argparse.Namespace) -> int:
    from clickmint.migrate import migrate
    from clickmint.services import services

    settings = Settings.from_env()
    with services(settings) as found:
        applied = asyncio.run(migrate(found.database_url))
    print("applied: " + (", ".join(applied) if applied else "nothing, the schema is up to date"))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from clickmint.demo import seed
    from clickmint.migrate import migrate
    from clickmint.services import read_run_file, services

    settings = Settings.from_env()
    info = read_run_file(settings.data_dir) or {}
    tracker_url = str(info.get("tracker") or f"http://{settings.host}:{settings.tracker_port}")
    with services(settings) as found:
        asyncio.run(migrate(found.database_url))
        portal = str(info.get("portal") or f"http://{settings.host}:{settings.portal_port}")
        print(asyncio.run(seed(found.database_url, tracker_url, portal)))
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from billing.runner import run_ingest

    return run_ingest()


def _with_database(action: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    """Run `action` on a connection to the configured (or running, or embedded) database."""
    return _with_servers(lambda conn, _redis_url: action(conn))


def _with_servers(action: Callable[[asyncpg.Connection, str], Awaitable[int]]) -> int:
    """Run `action` on a database connection and the Redis URL in use (configured, running or embedded)."""
    from clickmint.services import services

    settings = Settings.from_env()

    async def main(dsn: str, redis_url: str) -> int:
        conn = await asyncpg.connect(dsn)
        try:
            return await action(conn, redis_url)
        finally:
            await conn.close()

    with services(settings) as found:
        return asyncio.run(main(found.database_url, found.redis_url))


async def _ingest_backlog_note(redis_url: str, settings: Settings) -> str | None:
    """What ingest has not stored yet, in words, or None when it is all stored (or Redis cannot say)."""
    from billing.metrics import shard_state
    from kernel.redis.client import Redis, ReplyError

    client = Redis(redis_url, settings.redis_cluster)
    try:
        states = [await shard_state(client, settings.key_prefix, s) for s in range(settings.shards)]
    except (OSError, ReplyError) as exc:
        return f"could not ask Redis how far ingest is ({exc}); settling what PostgreSQL holds"
    finally:
        await client.close()
    behind = sum(state.lag + state.pending for state in states)
    dead = sum(state.dead for state in states)
    notes = []
    if behind:
        notes.append(
            f"stream entries ingest has not stored yet: {behind:,}; their events are settled by a later run"
            " (as adjustments in the next statement if this month closes now)"
        )
    if dead:
        notes.append(f"entries in the dead-letter streams, not settled: {dead:,}")
    return "; ".join(notes) or None


def cmd_settle(args: argparse.Namespace) -> int:
    """Approve, write ledger lines and statements for a month; close it when it has ended (or --close)."""
    import datetime as dt

    from billing.metrics import record_run
    from billing.settle import settle
    from kernel.sealed import Sealer

    async def action(conn: asyncpg.Connection, redis_url: str) -> int:
        note = await _ingest_backlog_note(redis_url, Settings.from_env())
        if note:
            print(f"clickmint: note: {note}", file=sys.stderr)
        started = dt.datetime.now(dt.UTC)
        print(f"settling {args.period} ...", file=sys.stderr, flush=True)
        report = await settle(
            conn,
            args.period,
            close=args.close,
            progress=lambda line: print(line, file=sys.stderr, flush=True),
            sealer=Sealer(Settings.from_env().secret_key),  # self-billed invoices print partners' VAT numbers
        )
        await record_run(conn, "settle", started, report.seconds, {"period": args.period})  # billing metrics
        print(report.summary())
        return 0

    return _with_servers(action)


def cmd_statement(args: argparse.Namespace) -> int:
    """show | export | paid a statement by its number."""
    import datetime as dt

    from billing import statements

    async def action(conn: asyncpg.Connection) -> int:
        statement_id = await conn.fetchval("SELECT id FROM statements WHERE number = $1", args.number)
        if statement_id is None:
            print(f"clickmint: no statement {args.number}", file=sys.stderr)
            return 1
        if args.action == "paid":
            await statements.mark_paid(conn, statement_id, dt.datetime.now(dt.UTC))
            print(f"{args.number} marked paid")
            return 0
        if args.action == "show":
            print((await statements.export(conn, statement_id, "csv")).decode(), end="")
            return 0
        if args.format == "detail":
            data = await statements.detail(conn, statement_id)
        else:
            data = await statements.export(conn, statement_id, args.format)
        if args.output == "-":
            sys.stdout.buffer.write(data)
        else:
            await asyncio.to_thread(Path(args.output).write_bytes, data)
            print(f"wrote {args.output} ({len(data)} bytes)")
        return 0

    return _with_database(action)


def cmd_payouts(args: argparse.Namespace) -> int:
    """Payout batches: export (SEPA pain.001 or PayPal CSV), file, paid, cancel, list (billing/payout_cli.py)."""
    from billing import payout_cli

    secret_key = Settings.from_env().secret_key
    return _with_database(lambda conn: payout_cli.run(args, conn, secret_key))


def _payouts_args(parser: argparse.ArgumentParser) -> None:
    from billing.payout_cli import add_args

    add_args(parser)


def cmd_retention(args: argparse.Namespace) -> int:
    """Drop raw event days older than CLICKMINT_RETENTION_DAYS that are final; print each decision."""
    from dataclasses import replace

    from billing.retention import apply_retention
    from billing.settings import BillingSettings
    from clickmint.services import services, with_urls

    billing = BillingSettings.from_env()

    async def main(settings: BillingSettings) -> int:
        assert settings.core.database_url is not None
        conn = await asyncpg.connect(settings.core.database_url)
        try:
            report = await apply_retention(conn, settings, dry_run=args.dry_run)
        finally:
            await conn.close()
        print("\n".join(report.lines()))
        return 0

    with services(billing.core) as found:
        return asyncio.run(main(replace(billing, core=with_urls(billing.core, found))))


def cmd_purge(args: argparse.Namespace) -> int:
    """Erase a customer's or a partner's personal data; money records stay whole (billing/privacy.py)."""
    from billing import privacy

    async def action(conn: asyncpg.Connection) -> int:
        if args.subject == "customer":
            if not args.merchant:
                print("clickmint: purge customer needs --merchant SLUG", file=sys.stderr)
                return 2
            report = await privacy.purge_customer(conn, args.merchant, args.id, requested_by=args.by)
        else:
            if not args.id.isdigit():
                print(f"clickmint: a partner id is a number, not {args.id!r}", file=sys.stderr)
                return 2
            report = await privacy.purge_partner(conn, int(args.id), requested_by=args.by)
        print(report.summary())
        return 0

    return _with_database(action)


def cmd_loyalty(args: argparse.Namespace) -> int:
    """Loyalty programmes: enable, balance, adjust, expire, key, liability (clickmint/loyalty_cli.py)."""
    from clickmint import loyalty_cli

    return _with_database(lambda conn: loyalty_cli.run(conn, args))


def _loyalty_args(parser: argparse.ArgumentParser) -> None:
    from clickmint import loyalty_cli

    loyalty_cli.add_args(parser)


def _retention_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true", help="print what would be dropped and kept, drop nothing")


def _purge_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("subject", choices=("customer", "partner"))
    parser.add_argument("id", help="the merchant's customer id (or the hash it sent), or the partner id")
    parser.add_argument("--merchant", help="the merchant's slug (for a customer)")
    parser.add_argument("--by", default="", help="who asked, for the audit row (e.g. a ticket number)")


def _settle_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--period", required=True, help="the month to settle, YYYY-MM")
    parser.add_argument(
        "--close",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="close the period's statements (default: when the month has ended)",
    )


def _statement_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("show", "export", "paid"))
    parser.add_argument("number", help="the statement number, e.g. CM-2026-11-000042")
    parser.add_argument(
        "--format",
        choices=("csv", "pdf", "detail"),
        default="csv",
        help="csv or pdf: the statement, in the language fixed on it when it closed (the CSV's machine columns "
        "never translated); detail: the event ids of each of its lines, as CSV",
    )
    parser.add_argument("-o", "--output", default="-", help="file to write the export to (default: stdout)")


def cmd_admin(args: argparse.Namespace) -> int:
    from clickmint.migrate import migrate
    from clickmint.services import services
    from portal.cli import main as admin

    with services(Settings.from_env()) as found:
        asyncio.run(migrate(found.database_url))
        return admin(args, found.database_url)


def _admin_args(parser: argparse.ArgumentParser) -> None:
    from portal.cli import add_args

    add_args(parser)


COMMANDS: dict[
    str, tuple[Callable[[argparse.Namespace], int], str, Callable[[argparse.ArgumentParser], None] | None]
] = {
    "up": (cmd_up, "run everything on this machine (embedded Valkey and PostgreSQL unless URLs are set)", None),
    "migrate": (cmd_migrate, "apply the SQL migrations that are missing", None),
    "demo": (cmd_demo, "seed a merchant, two offers, two partners with links, and print tracking URLs", None),
    "ingest": (cmd_ingest, "run billing ingest: event streams -> PostgreSQL", None),
    "settle": (cmd_settle, "approve conversions, write ledger lines and statements for a month", _settle_args),
    "statement": (
        cmd_statement,
        "show, export (csv, pdf, or the events of each line: detail) or mark paid a statement",
        _statement_args,
    ),
    "payouts": (cmd_payouts, "payout batches: SEPA or PayPal files of a month's payable statements", _payouts_args),
    "retention": (cmd_retention, "drop raw event days past CLICKMINT_RETENTION_DAYS once final", _retention_args),
    "admin": (cmd_admin, "merchants, offers, partners, links, products, rates, users, API keys, audit", _admin_args),
    "loyalty": (cmd_loyalty, "loyalty programmes: enable, balance, adjust, expire, key, liability", _loyalty_args),
    "purge": (cmd_purge, "erase a customer's or a partner's personal data (privacy request)", _purge_args),
}


def _chosen(argv: list[str]) -> str | None:
    """The command named on the command line (the first word that is not an option), if any."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """The parser for this command line: every command listed, the chosen one's arguments built."""
    parser = argparse.ArgumentParser(prog="clickmint", description="Affiliate click-and-action tracking engine.")
    sub = parser.add_subparsers(dest="command", required=True)
    chosen = _chosen(argv)
    for name, (_, help_text, add_args) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        # Only the chosen command's arguments are built: building them imports that command's code
        # (the admin commands pull in the portal, statements pull in the PDF renderer), and a
        # `clickmint ingest` restarted by a supervisor should not pay a second of imports it never uses.
        if add_args is not None and name == chosen:
            add_args(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser(sys.argv[1:] if argv is None else argv).parse_args(argv)
    try:
        setup_logging()
        return COMMANDS[args.command][0](args)
    except SettingsError as exc:
        print(f"clickmint: configuration error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a malformed argument the command refused, e.g. --period 2026-13
        print(f"clickmint: {exc}", file=sys.stderr)
        return 2
    except ClickmintError as exc:
        print(f"clickmint: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
