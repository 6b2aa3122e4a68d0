"""Settle, the traffic half: paid clicks, views and impressions as one line per offer, partner, UTC day, kind and rate.

A line pays `quantity` events at `rate_minor`: quantity x rate for cpc (unique, non-bot, non-refused clicks)
and cpv (non-bot, non-refused views), round(quantity x rate / 1000) for cpm, rounded once per line. Events
seen after their day's line was written (late, or spooled) make another line of the same group; for cpm it
accrues on the group's cumulative count (kernel.fees.cpm_accrual), so however a day's views are split
over settles the group's total is round(all views x rate / 1000), no fraction lost or invented. A line's
events are recorded in ledger_line_events, unique per event and kind: replays, a second settle or two
settles at once never pay an event twice. A cpm group that would earn 0 writes nothing and its views stay
unpaid until the group earns something. The line's splits by country and sub id add up to it (cpm split
by largest remainder in proportion to the views).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import asyncpg

from billing import statements
from billing.ledger import CLICK_LOOKBACK, LedgerReport, counted, written_lines
from kernel.fees import cpm_accrual
from kernel.money import allocate, format_amount
from kernel.plans import OfferTerms

# kind, the plan's rate of it, which events it pays (beside: not a bot, not refused, a partner)
KINDS = (
    ("cpc", "cpc_minor", "e.type = 'click' AND e.is_unique"),
    ("cpv", "cpv_minor", "e.type = 'view'"),
    ("cpm", "cpm_minor", "e.type = 'view'"),
)
_FRESH = """CREATE TEMP TABLE IF NOT EXISTS cm_fresh_traffic (
    event_id uuid, kind text, offer_id bigint, partner_id bigint, day date, country text, sub1 text, rate_minor bigint
) ON COMMIT DROP"""
Group = tuple[str, int, int, dt.date, int]  # kind, offer, partner, day, rate


async def pay_traffic(
    conn: asyncpg.Connection,
    terms: dict[int, OfferTerms],
    start: dt.datetime,
    end: dt.datetime,
    report: LedgerReport,
    opened: statements.StatementReport,
) -> None:
    """Pay the unpaid traffic from `start` (less the look-back) to `end`, as lines per group (see above)."""
    await conn.execute(_FRESH)
    await conn.execute("TRUNCATE cm_fresh_traffic")
    for offer in terms.values():
        others = list(offer.overrides)
        for partner, plan in [(None, offer.plan), *offer.overrides.items()]:
            for kind, field, condition in KINDS:
                rate = getattr(plan, field)
                if not rate:
                    continue
                who = "e.partner_id = $4" if partner is not None else "NOT (e.partner_id = ANY($4::bigint[]))"
                # One statement reads the events: what it found is exactly what the lines below pay.
                await conn.execute(
                    f"""INSERT INTO cm_fresh_traffic
                        SELECT e.id, $2, e.offer_id, e.partner_id, (e.ts AT TIME ZONE 'UTC')::date, e.country,
                               left(coalesce(e.sub1, ''), 100), $3
                        FROM events e
                        WHERE e.offer_id = $1 AND {condition} AND e.bot_reason IS NULL AND e.refusal IS NULL
                          AND e.partner_id IS NOT NULL AND {who} AND e.ts >= $5 AND e.ts < $6
                          AND NOT EXISTS (SELECT 1 FROM ledger_line_events p
                                          WHERE p.event_id = e.id AND p.kind = $2)""",
                    offer.id,
                    kind,
                    rate,
                    partner if partner is not None else others,
                    start - CLICK_LOOKBACK,
                    end,
                )
    found = await conn.fetch(
        """SELECT kind, offer_id, partner_id, day, rate_minor, country, sub1, count(*) AS n FROM cm_fresh_traffic
           GROUP BY 1, 2, 3, 4, 5, 6, 7 ORDER BY 1, 2, 3, 4, 5, 6, 7"""
    )
    if not found:
        return
    groups: dict[Group, list[tuple[str, str, int]]] = defaultdict(list)
    for row in found:
        key = (row["kind"], row["offer_id"], row["partner_id"], row["day"], row["rate_minor"])
        groups[key].append((row["country"], row["sub1"], int(row["n"])))
    paid = await _paid_before(conn, start - CLICK_LOOKBACK)
    lines, splits = _lines(groups, paid, terms)
    if not lines:
        return
    written = await conn.fetch(
        "WITH "
        + written_lines(
            """SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[],
                                    $7::bigint[], $8::text[], $9::timestamptz[], $10::bigint[], $11::bigint[])
                      AS x(source, kind, merchant_id, partner_id, offer_id, currency, amount_minor, basis,
                           occurred_at, quantity, rate_minor)""",
            end_param=12,
        )
        + " SELECT id, source, kind, statement_id FROM written",
        *[[line[i] for line in lines] for i in range(11)],
        end,
    )
    ids = {row["source"]: row["id"] for row in written}
    per_kind: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row in written:
        per_kind[row["kind"]][0] += 1
        per_kind[row["kind"]][1] += row["statement_id"] is not None
    counted(report, opened, [{"kind": k, "n": n, "assigned": a} for k, (n, a) in sorted(per_kind.items())])
    kept = [split for split in splits if split[0] in ids]
    await conn.execute(
        """INSERT INTO ledger_splits (line_id, partner_id, offer_id, day, country, sub1, quantity, amount_minor)
           SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::date[], $5::text[], $6::text[],
                                $7::bigint[], $8::bigint[])""",
        *[[ids[s[0]] if i == 0 else s[i] for s in kept] for i in range(8)],
    )
    by_group = [(group, ids[source]) for source, group in ((line[0], line[11]) for line in lines) if source in ids]
    await conn.execute(
        """INSERT INTO ledger_line_events (event_id, kind, line_id)
           SELECT f.event_id, f.kind, g.line_id FROM cm_fresh_traffic f
           JOIN unnest($1::text[], $2::bigint[], $3::bigint[], $4::date[], $5::bigint[], $6::bigint[])
                AS g(kind, offer_id, partner_id, day, rate_minor, line_id)
             ON f.kind = g.kind AND f.offer_id = g.offer_id AND f.partner_id = g.partner_id AND f.day = g.day
            AND f.rate_minor = g.rate_minor""",
        *[[group[i] for group, _ in by_group] for i in range(5)],
        [line_id for _, line_id in by_group],
    )


async def _paid_before(conn: asyncpg.Connection, since: dt.datetime) -> dict[Group, tuple[int, int]]:
    """Per group, what earlier lines paid: (events, lines)."""
    rows = await conn.fetch(
        """SELECT l.kind, l.offer_id, l.partner_id, (l.occurred_at AT TIME ZONE 'UTC')::date AS day, l.rate_minor,
                  sum(l.quantity)::bigint AS q, count(*) AS n
           FROM ledger_lines l
           JOIN (SELECT DISTINCT offer_id, partner_id FROM cm_fresh_traffic) f
             ON f.offer_id = l.offer_id AND f.partner_id = l.partner_id
           WHERE l.quantity IS NOT NULL AND l.occurred_at >= $1 GROUP BY 1, 2, 3, 4, 5""",
        since,
    )
    return {(r["kind"], r["offer_id"], r["partner_id"], r["day"], r["rate_minor"]): (int(r["q"]), r["n"]) for r in rows}


def _lines(
    groups: dict[Group, list[tuple[str, str, int]]], paid: dict[Group, tuple[int, int]], terms: dict[int, OfferTerms]
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The lines to write (the columns of written_lines, then the group) and their splits."""
    lines: list[tuple[Any, ...]] = []
    splits: list[tuple[Any, ...]] = []
    for group, parts in sorted(groups.items()):
        kind, offer_id, partner_id, day, rate = group
        offer = terms[offer_id]
        plan = offer.plan_for(partner_id)
        quantity = sum(n for _, _, n in parts)
        before, made = paid.get(group, (0, 0))
        if kind == "cpm":
            amount = cpm_accrual(rate, before, before + quantity, plan.rounding)
            if amount == 0:
                continue  # these views stay unpaid until the group earns something
            shares = allocate(amount, [n for _, _, n in parts])
        else:
            amount = quantity * rate
            shares = [n * rate for _, _, n in parts]
        source = f"{kind}:{offer_id}:{partner_id}:{day.isoformat()}:{rate}:{made + 1}"
        occurred = dt.datetime.combine(day, dt.time(), dt.UTC)
        lines.append(
            (source, kind, offer.merchant_id, partner_id, offer_id, plan.currency, amount,
             _basis(kind, quantity, rate, before, plan.currency), occurred, quantity, rate, group)
        )  # fmt: skip
        for (country, sub1, n), share in zip(parts, shares, strict=True):
            splits.append((source, partner_id, offer_id, day, country, sub1, n, share))
    return lines, splits


def _basis(kind: str, quantity: int, rate: int, before: int, currency: str) -> str:
    price = f"{format_amount(rate, currency)} {currency}"
    if kind == "cpc":
        return f"{quantity} unique click{'s' if quantity != 1 else ''} x {price}"
    if kind == "cpv":
        return f"{quantity} view{'s' if quantity != 1 else ''} x {price}"
    if before:
        return f"views {before + 1}-{before + quantity} of the day at {price} per 1000"
    return f"{quantity} view{'s' if quantity != 1 else ''} x {price} per 1000"
