"""The programme report page: one date range (in the URL), totals per currency, clicks per day, the table by
partner and offer, and the same rows as CSV."""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.responses import Response

from portal import charts, i18n, validate
from portal import dashboard as board
from portal import operator_reports as oreports
from portal.api import Ctx
from portal.errors import ApiError
from portal.pages import failed_form, show


async def admin_home(ctx: Ctx, form: Any) -> Response:
    """The programme report: one date range (in the URL), totals per currency, clicks per day, the table by
    partner and offer, and the same table as CSV (format=csv)."""
    today = dt.datetime.now(dt.UTC).date()
    raw = {k: ctx.request.query_params.get(k, "") for k in ("range", "from", "to")}
    failed = None
    try:
        since = ctx.query("from", validate.date, None)
        until = ctx.query("to", validate.date, None)
        win = board.window(raw["range"] or "30d", since, until, today)
    except ApiError as exc:
        failed = failed_form(exc, raw)
        win = board.window("30d", None, None, today)
    rows = await oreports.report(ctx.conn, ctx.who, win.since, "partner_offer", win.until)
    if ctx.request.query_params.get("format") == "csv":
        return report_csv(rows, win)
    days = await oreports.report(ctx.conn, ctx.who, win.since, "day", win.until)
    clicks = {r["key"]: r["clicks"] for r in days}
    title = i18n.gettext_("%(metric)s per day, %(period)s") % {"metric": i18n.gettext_("Clicks"), "period": win.label}
    chart = charts.bars(board.series(win, clicks), title, unit=i18n.gettext_("clicks"))
    return await show(
        ctx,
        "admin_report.html",
        rows=rows,
        totals=report_totals(rows),
        win=win,
        presets={k: i18n.gettext_(v) for k, v in board.PRESETS.items()},
        chart=chart,
        trend=board.series(win, clicks),
        failed=failed,
        query=ctx.request.url.query,
    )


def report_totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The table's totals: traffic counts, and money per currency (minor units summed, then formatted)."""
    counts = {k: sum(r[k] for r in rows) for k in ("views", "clicks", "unique_clicks", "bots", "actions")}
    money: dict[str, dict[str, int]] = {}
    for r in rows:
        for m in r["money"]:
            total = money.setdefault(m["currency"], {})
            for k in ("sales", "sales_minor", *(f"commission_{b}_minor" for b in BUCKETS)):
                total[k] = total.get(k, 0) + m[k]
    return {"counts": counts, "money": money}


BUCKETS = ("pending", "approved", "reversed", "paid")
CSV_COLUMNS = ("partner", "offer", "views", "clicks", "unique_clicks", "bots", "actions", "currency", "sales")


def report_csv(rows: list[dict[str, Any]], win: Any) -> Response:
    """The report's rows as CSV, one line per partner, offer and currency, amounts as decimal text."""
    import csv
    import io

    from billing.public.statement_doc import safe_cell
    from kernel.money import format_amount

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*CSV_COLUMNS, "sales_amount", *BUCKETS])
    for r in rows:
        for m in r["money"] or [None]:
            names = [safe_cell(str(r.get("partner", ""))), safe_cell(str(r.get("offer", "")))]  # names partners type
            base = [*names, *(r[k] for k in CSV_COLUMNS[2:7])]
            if m is None:
                writer.writerow([*base, "", "", "", *("" for _ in BUCKETS)])
                continue
            ccy = m["currency"]
            amounts = [format_amount(m[f"commission_{b}_minor"], ccy) for b in BUCKETS]
            writer.writerow([*base, ccy, m["sales"], format_amount(m["sales_minor"], ccy), *amounts])
    name = f"report-{win.since.isoformat()}-{win.until.isoformat()}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
