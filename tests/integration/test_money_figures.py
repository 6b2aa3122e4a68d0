"""One source of truth for money: what the portal and the API show (pending, approved, reversed, paid, by day,
offer, sub id, country and statement period) is read from the records statements are made of, in the currency
the statement carries; once a period is settled its figures equal its statements to the minor unit. And
statements a partner can read: paid clicks, views and impressions as one line per offer, day and rate."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import re
from decimal import Decimal
from typing import Any

import asyncpg
import httpx

from billing import statements
from billing.settle import settle
from kernel.settings import Settings
from tests.factories import Programme, programme
from tests.money_kit import Feeder, feeder
from tests.portal.kit import add_user, login, portal_client

MARCH = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)
APRIL = dt.datetime(2025, 4, 1, tzinfo=dt.UTC)


def day(n: int, hour: int = 12) -> dt.datetime:
    return MARCH + dt.timedelta(days=n - 1, hours=hour)


async def _stats(portal: httpx.AsyncClient, group: str, since: str = "2025-03-01", until: str = "2025-04-30") -> Any:
    response = await portal.get(f"/api/v1/partner/stats?group={group}&from={since}&to={until}")
    assert response.status_code == 200, response.text
    return response.json()


async def _dashboard(portal: httpx.AsyncClient, since: str, until: str) -> dict[str, str]:
    """The partner dashboard's USD cards for a custom range, and its statements page's total for that month."""
    page = await portal.get(f"/dashboard?range=custom&from={since}&to={until}")
    assert page.status_code == 200, page.text

    def card(attribute: str, name: str) -> str:
        found = re.search(rf'{attribute}="{name}">([^<]*)<', page.text)
        assert found, name
        return found.group(1)

    listing = (await portal.get("/statements")).text
    return {
        **{m: card("data-metric", m) for m in ("earned", "aov", "commission_approved", "commission_reversed")},
        "commission_paid": card("data-metric", "commission_paid"),
        "balance_approved": card("data-balance-metric", "approved"),
        "balance_paid": card("data-balance-metric", "paid"),
        "period": re.search(r"Showing <strong>([^<]*)</strong>", page.text).group(1),
        "statement": re.search(r'<td class="num">([^<]*USD)</td>', listing).group(1),
    }


def _money(stats: Any) -> dict[str, dict[str, Any]]:
    return {m["currency"]: m for m in stats["money"]}


async def _partner(db: asyncpg.Connection, prog: Programme, email: str = "p@p.example") -> str:
    await add_user(db, email, "partner", partner_id=prog.partner_id, merchant_id=prog.merchant_id)
    return email


async def _lines_total(db: asyncpg.Connection, statement_id: int) -> int:
    return await db.fetchval(
        "SELECT coalesce(sum(coalesce(fx_amount_minor, amount_minor)), 0) FROM ledger_lines WHERE statement_id = $1",
        statement_id,
    )


async def test_reversals_show_and_approved_less_reversed_is_the_statement(settings: Settings, db: asyncpg.Connection):
    # Reported: after the close the dashboard said 19.65 approved, the statement 19.60. The cause: a refund of
    # 0.50 takes back 10% of it, 0.05, as a reversal line that the statement has and the rollups never had
    # (commission_reversed stayed 0 and approved was never reduced).
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await db.execute("UPDATE offers SET hold_days = 0")
    email = await _partner(db, prog)
    async with feeder(settings, db) as feed:
        await feed.send(feed.event(prog, "purchase", day(10), order_id="S-1", amount=19650, currency="USD"))
        await settle(db, "2025-03", now=day(15), close=False)
        await feed.send(feed.event(prog, "refund", day(20), order_id="S-1", amount=50, currency="USD"))
        await settle(db, "2025-03", now=APRIL + dt.timedelta(hours=1))
    statement = await db.fetchrow("SELECT * FROM statements")
    assert (statement["status"], statement["total_minor"]) == ("closed", 1960)
    async with portal_client(settings) as portal:
        await login(portal, email)
        usd = _money(await _stats(portal, "period"))["USD"]
        assert (usd["commission_approved"], usd["commission_reversed"], usd["commission_pending"]) == (
            "19.65",
            "0.05",
            "0.00",
        )
        assert usd["commission_approved_minor"] - usd["commission_reversed_minor"] == statement["total_minor"]
        (order,) = (await portal.get("/api/v1/partner/orders")).json()["orders"]
        assert (order["commission"], order["reversed"]) == ("19.65 USD", "0.05 USD")
        detail = await portal.get(f"/api/v1/partner/statements/{statement['id']}")
        lines = detail.json()["lines"]
        assert [(line["kind"], line["amount"], line["adjustment"]) for line in lines] == [
            ("cps", "19.65", False),
            ("reversal:cps", "-0.05", False),  # a reversal in the month of its sale is no adjustment
        ]
        # The dashboard's cards for the settled month say the same, as money: earned is the statement's total.
        cards = await _dashboard(portal, "2025-03-01", "2025-03-31")
        assert cards["earned"] == cards["statement"] == "19.60 USD"
        assert (cards["commission_approved"], cards["commission_reversed"]) == ("19.65 USD", "0.05 USD")
        assert cards["balance_approved"] == "19.60 USD" and cards["balance_paid"] == "0.00 USD"
        assert cards["aov"] == "196.50 USD" and cards["period"] == "March 2025"
        await db.execute("UPDATE statements SET status = 'paid', paid_at = now()")
        paid = _money(await _stats(portal, "period"))["USD"]
        assert (paid["commission_approved"], paid["commission_reversed"], paid["commission_paid"]) == (
            "0.00",
            "0.00",
            "19.60",
        )
        cards = await _dashboard(portal, "2025-03-01", "2025-03-31")
        assert (cards["earned"], cards["commission_paid"], cards["balance_paid"]) == ("19.60 USD",) * 3
        assert cards["balance_approved"] == "0.00 USD"


async def test_reversals_round_as_the_merchant_rounds(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10"})
    await db.execute("UPDATE merchants SET rounding = 'half_up'")
    await db.execute("UPDATE offers SET hold_days = 0")
    async with feeder(settings, db) as feed:
        await feed.send(feed.event(prog, "purchase", day(10), order_id="S-1", amount=50, currency="USD"))
        await settle(db, "2025-03", now=day(11), close=False)
        await feed.send(feed.event(prog, "refund", day(12), order_id="S-1", amount=25, currency="USD"))
        await settle(db, "2025-03", now=day(13), close=False)
    reversal = await db.fetchval("SELECT amount_minor FROM ledger_lines WHERE kind = 'reversal:cps'")
    assert reversal == -3  # 2.5 taken back of 5, half up (it was rounded half even, to 2, whatever the merchant said)


async def _traffic(feed: Feeder, prog: Programme) -> list[dict[str, Any]]:
    """Day 10: 3 unique clicks (2 under sub id a in DE, 1 under b in FR), a repeat, a bot's and a refused click;
    1234 views (1000 under a, 234 under b), a bot's and a refused view. Day 11: 10 views."""
    events = [
        feed.event(prog, "click", day(10, 9), sub1="a"),
        feed.event(prog, "click", day(10, 10), sub1="a"),
        feed.event(prog, "click", day(10, 11), sub1="b", country="FR"),
        feed.event(prog, "click", day(10, 12), sub1="a", unique=False),
        feed.event(prog, "click", day(10, 13), sub1="a", bot="crawler_ua"),
        feed.event(prog, "click", day(10, 14), sub1="a", refusal="link_inactive", unique=False),
        feed.event(prog, "view", day(10, 15), sub1="a", bot="crawler_ua"),
        feed.event(prog, "view", day(10, 15), sub1="a", refusal="link_inactive"),
    ]
    events += [feed.event(prog, "view", day(10, 16), sub1="a") for _ in range(1000)]
    events += [feed.event(prog, "view", day(10, 17), sub1="b", country="FR") for _ in range(234)]
    events += [feed.event(prog, "view", day(11, 8), sub1="a") for _ in range(10)]
    return events


# cpc 0.20 x 3; cpv 0.01 x (1234 + 10); cpm 1.50 per 1000: day 10 round(185.1) = 185, day 11 round(1.5) = 2
CPC, CPV, CPM = 3 * 20, 1244 * 1, 185 + 2


async def test_clicks_views_and_impressions_are_paid_per_offer_day_and_rate(settings: Settings, db: asyncpg.Connection):
    prog = await programme(db, fee_plan={"cpc": 20, "cpv": 1, "cpm": 150})
    email = await _partner(db, prog)
    async with feeder(settings, db) as feed, portal_client(settings) as portal:
        await login(portal, email)
        events = await _traffic(feed, prog)
        await feed.send(*events)
        before = _money(await _stats(portal, "day"))["USD"]
        assert (before["commission_pending_minor"], before["commission_approved_minor"]) == (CPC + CPV + CPM, 0)

        await asyncio.gather(  # two settles at once: the second waits for the first and pays nothing again
            settle(db, "2025-03", now=day(20), close=False),
            _settle_elsewhere(settings, day(20)),
        )
        await feed.send(*events, again=True)  # a replayed spool: stored once, paid once
        await settle(db, "2025-03", now=day(21), close=False)
        lines = await db.fetch(
            """SELECT kind, occurred_at, quantity, rate_minor, amount_minor, basis, source FROM ledger_lines
               ORDER BY kind, occurred_at"""
        )
        assert [(r["kind"], r["occurred_at"].day, r["quantity"], r["amount_minor"]) for r in lines] == [
            ("cpc", 10, 3, 60),
            ("cpm", 10, 1234, 185),
            ("cpm", 11, 10, 2),
            ("cpv", 10, 1234, 1234),
            ("cpv", 11, 10, 10),
        ]
        assert lines[0]["basis"] == "3 unique clicks x 0.20 USD"
        assert lines[1]["basis"] == "1234 views x 1.50 USD per 1000"
        assert await db.fetchval("SELECT count(*) FROM ledger_line_events") == 3 + 1244 * 2

        # Views of day 10 arriving late: another line of the same group, accrued on the group's count.
        await feed.send(*[feed.event(prog, "view", day(10, 18), sub1="c") for _ in range(5)])
        await settle(db, "2025-03", now=day(22), close=False)
        late = await db.fetch("SELECT kind, quantity, amount_minor, basis FROM ledger_lines WHERE quantity = 5")
        assert sorted((r["kind"], r["amount_minor"]) for r in late) == [("cpm", 1), ("cpv", 5)]  # 185.85 -> 186
        assert "views 1235-1239 of the day" in next(r["basis"] for r in late if r["kind"] == "cpm")
        settled = CPC + CPV + CPM + 1 + 5

        by = {group: await _stats(portal, group) for group in ("day", "sub1", "country", "offer", "period")}
        for group, stats in by.items():
            usd = _money(stats)["USD"]
            assert (usd["commission_approved_minor"], usd["commission_pending_minor"]) == (settled, 0), group
            assert sum(m["commission_approved_minor"] for r in stats["rows"] for m in r["money"]) == settled, group
        by_sub = {r["key"]: r["money"][0]["commission_approved_minor"] for r in by["sub1"]["rows"] if r["money"]}
        # a: 2 clicks, 1010 views, and of day 10's cpm line (185) its share by views, 1000 of 1234, largest
        # remainder (149.9 -> 150; b: 35.1 -> 35), and all of day 11's (2); c: the late views and their cpm line.
        assert by_sub == {"a": 40 + 1010 + 150 + 2, "b": 20 + 234 + 35, "c": 5 + 1}
        await settle(db, "2025-03", now=APRIL + dt.timedelta(hours=1))
        statement = await db.fetchrow("SELECT * FROM statements")
        assert statement["total_minor"] == settled == await _lines_total(db, statement["id"])
        assert statement["status"] == "closed"

        # The statement: 7 lines, not a line per event; each traces to its events.
        shown = (await portal.get(f"/api/v1/partner/statements/{statement['id']}")).json()
        assert len(shown["lines"]) == 7
        cpc = next(line for line in shown["lines"] if line["kind"] == "cpc")
        assert (cpc["quantity"], cpc["rate"], cpc["amount"]) == (3, "0.20", "0.60")
        detail = await portal.get(f"/api/v1/partner/statements/{statement['id']}/detail?line={cpc['id']}")
        assert detail.status_code == 200 and detail.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(detail.text)))
        assert sorted(r["Event"] for r in rows) == sorted(e["id"] for e in events[:3])
        everything = list(
            csv.DictReader(io.StringIO((await portal.get(f"/api/v1/partner/statements/{statement['id']}/detail")).text))
        )
        assert len(everything) == 3 + 1249 * 2
        exported = await portal.get(f"/api/v1/partner/statements/{statement['id']}/csv")
        table = [r for r in csv.reader(io.StringIO(exported.text)) if len(r) == 9][1:]
        for row in table:
            if row[2] in ("cpc", "cpv"):
                assert Decimal(row[5]) * Decimal(row[6]) == Decimal(row[7])


async def _settle_elsewhere(settings: Settings, now: dt.datetime) -> None:
    conn = await asyncpg.connect(settings.database_url)
    try:
        await settle(conn, "2025-03", now=now, close=False)
    finally:
        await conn.close()


async def test_a_sale_in_another_currency_counts_in_its_own(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10", "cpa": {"purchase": 100}})
    await db.execute("UPDATE offers SET hold_days = 0")
    email = await _partner(db, prog)
    await add_user(db, "ops@shop.example", "operator", merchant_id=prog.merchant_id)
    async with feeder(settings, db) as feed:
        await feed.send(
            feed.event(prog, "purchase", day(5), order_id="U-1", amount=10000, currency="USD", sub1="x"),
            feed.event(prog, "purchase", day(6), order_id="E-1", amount=5000, currency="EUR", sub1="x"),
        )
        async with portal_client(settings) as portal:
            await login(portal, email)
            pending = _money(await _stats(portal, "sub1"))
            assert {c: (m["sales"], m["sales_amount"], m["commission_pending"]) for c, m in pending.items()} == {
                "USD": (1, "100.00", "12.00"),  # 10% and the cpa of 1.00 USD of the USD sale, the cpa of the EUR sale
                "EUR": (1, "50.00", "5.00"),  # 10% of the EUR sale, in EUR: never added to the USD figures
            }
            orders = {
                o["order_id"]: o["commission"] for o in (await portal.get("/api/v1/partner/orders")).json()["orders"]
            }
            assert orders == {"U-1": "11.00 USD", "E-1": "5.00 EUR + 1.00 USD"}
        await settle(db, "2025-03", now=APRIL + dt.timedelta(hours=1))
    closed = {r["currency"]: r["total_minor"] for r in await db.fetch("SELECT currency, total_minor FROM statements")}
    assert closed == {"USD": 1200, "EUR": 500}
    async with portal_client(settings) as portal:
        await login(portal, email)
        settled = _money(await _stats(portal, "period"))
        assert {c: m["commission_approved_minor"] for c, m in settled.items()} == closed
        await login(portal, "ops@shop.example")
        report = (await portal.get("/api/v1/admin/reports?from=2025-03-01&to=2025-03-31")).json()
        (row,) = report["rows"]
        assert {m["currency"]: m["commission_approved_minor"] for m in row["money"]} == closed
        assert row["partner_id"] == prog.partner_id and row["offer_id"] == prog.offer_id


async def test_statements_in_the_partners_currency_show_in_it(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cps_percent": "10", "cpc": 33})
    await db.execute("UPDATE offers SET hold_days = 0")
    await db.execute("UPDATE merchants SET statement_currency = 'partner'")
    await db.execute("UPDATE partners SET currency = 'EUR'")
    await db.execute(
        "INSERT INTO currency_rates (merchant_id, base, quote, rate, valid_from) VALUES ($1, 'USD', 'EUR', 0.9, $2)",
        prog.merchant_id,
        MARCH,
    )
    email = await _partner(db, prog)
    async with feeder(settings, db) as feed:
        clicks = [feed.event(prog, "click", day(3, h), sub1=f"s{h % 3}") for h in range(7)]
        await feed.send(*clicks, feed.event(prog, "purchase", day(4), order_id="U-1", amount=1001, currency="USD"))
        async with portal_client(settings) as portal:
            await login(portal, email)
            money = _money(await _stats(portal, "day"))  # commission estimated at today's rate, sales as sold
            assert (money["EUR"]["commission_pending_minor"], money["USD"]["commission_pending_minor"]) == (298, 0)
            assert (money["USD"]["sales"], money["EUR"]["sales"]) == (1, 0)
        await settle(db, "2025-03", now=APRIL + dt.timedelta(hours=1))
    statement = await db.fetchrow("SELECT * FROM statements")
    assert statement["currency"] == "EUR"
    # cpc 7 x 0.33 = 2.31 USD -> 2.079 -> 2.08 EUR; cps 1.00 USD -> 0.90 EUR: converted once per line
    assert statement["total_minor"] == 208 + 90
    async with portal_client(settings) as portal:
        await login(portal, email)
        for group in ("day", "sub1", "period"):
            stats = await _stats(portal, group)
            assert _money(stats)["EUR"]["commission_approved_minor"] == statement["total_minor"], group
            assert _money(stats)["USD"]["commission_approved_minor"] == 0, group
            assert sum(m["commission_approved_minor"] for r in stats["rows"] for m in r["money"]) == 298, group


async def test_late_lines_and_reversals_of_an_earlier_period_are_adjustments(
    settings: Settings, db: asyncpg.Connection
):
    prog = await programme(db, fee_plan={"cps_percent": "10", "cpc": 5})
    await db.execute("UPDATE offers SET hold_days = 0")
    async with feeder(settings, db) as feed:
        await feed.send(feed.event(prog, "purchase", day(10), order_id="S-1", amount=10000, currency="USD"))
        await settle(db, "2025-03", now=APRIL + dt.timedelta(hours=1))  # March closed
        await feed.send(
            feed.event(prog, "click", day(31, 23)),  # a March click, arriving after the close
            feed.event(prog, "refund", APRIL + dt.timedelta(days=2), order_id="S-1", amount=1000, currency="USD"),
            feed.event(prog, "purchase", APRIL + dt.timedelta(days=3), order_id="S-2", amount=2000, currency="USD"),
        )
        await settle(db, "2025-04", now=APRIL + dt.timedelta(days=4), close=False)
        await feed.send(
            feed.event(prog, "refund", APRIL + dt.timedelta(days=5), order_id="S-2", amount=2000, currency="USD")
        )
        await settle(db, "2025-04", now=APRIL + dt.timedelta(days=6), close=False)
    april = await db.fetchval("SELECT id FROM statements WHERE period_start = '2025-04-01'")
    doc = await statements.document(db, april)
    assert sorted((line.kind, line.amount_minor, line.adjustment) for line in doc.lines) == [
        ("cpc", 5, True),  # happened in March
        ("cps", 200, False),
        ("reversal:cps", -200, False),  # S-2 sold and refunded in April: an ordinary line
        ("reversal:cps", -100, True),  # S-1 was sold in March
    ]


async def test_the_statement_worked_out_in_docs_money(settings: Settings, db: asyncpg.Connection) -> None:
    prog = await programme(db, fee_plan={"cpc": 20, "cpm": 150, "cpa": {"signup": 250}, "cps_percent": "7.5"})
    await db.execute("UPDATE offers SET hold_days = 0")
    await db.execute("UPDATE partners SET min_payout_minor = 5000")
    nov = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)
    async with feeder(settings, db) as feed:
        clicks = [feed.event(prog, "click", nov + dt.timedelta(days=2, seconds=i)) for i in range(412)]
        views = [feed.event(prog, "view", nov + dt.timedelta(days=2, hours=5)) for _ in range(1234)]
        click_id = clicks[0]["click_id"]
        signups = [
            feed.event(prog, "action", nov + dt.timedelta(days=4, hours=h), action="signup", click_id=click_id)
            for h in (1, 2)
        ]
        sale = feed.event(prog, "purchase", nov + dt.timedelta(days=7), order_id="A-1", amount=12999, currency="USD")
        await feed.send(*clicks, *views, *signups, sale)
        await settle(db, "2025-11", now=nov + dt.timedelta(days=9), close=False)
        await feed.send(*[feed.event(prog, "view", nov + dt.timedelta(days=2, hours=6)) for _ in range(6)])
        await feed.send(
            feed.event(prog, "refund", nov + dt.timedelta(days=19), order_id="A-1", amount=2999, currency="USD")
        )
        await settle(db, "2025-11", now=dt.datetime(2025, 12, 1, 1, tzinfo=dt.UTC))
    statement = await db.fetchrow("SELECT * FROM statements")
    lines = sorted((r["kind"], r["amount_minor"]) for r in await db.fetch("SELECT * FROM ledger_lines"))
    assert lines == [("cpa", 250), ("cpc", 8240), ("cpm", 1), ("cpm", 185), ("cps", 975), ("reversal:cps", -225)]
    assert (statement["carried_in_minor"], statement["total_minor"], statement["payable"]) == (0, 9426, True)
    assert await db.fetchval("SELECT reason FROM conversions WHERE status = 'rejected'") == "duplicate_action"
