"""What ingest derives from newly stored events, in the same transaction: rollups, conversions, refunds, customers.

Called only with events this transaction made new (the event id decides), so every count and every
conversion is made once however often an entry is delivered. A batch's rollups are summed here, one
row per key, and COPYed as they are into `rollup_deltas`: appended, nothing looked up or locked. Every
FOLD_EVERY_S ingest folds the deltas into `rollup_totals` in a transaction of its own (`fold`, with
cm_fold_rollups of migration 0021), so a key's row is updated once per fold instead of once per batch
(~3,000 rows a batch of 5,000 events in the bench: two thirds of what deriving cost PostgreSQL); the view
`rollups` sums both. Conversions and commissions are COPYed into a temp table, then moved into the real
table by one statement: a few µs an event less than unnest arrays or executemany.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from typing import Any

import asyncpg
import orjson

from billing import fraud_facts, supersede
from billing.attribution import Verdict, authenticated, judge, occurred_at, supersedes
from billing.events import copy
from billing.loyalty_ingest import LoyaltyHook
from billing.plans import load_terms
from kernel import fraud
from kernel.plans import OfferTerms

log = logging.getLogger("clickmint.billing.derive")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
# partner, day, offer, country, sub1 -> views, clicks, unique, bots, actions, sales, sales_minor, billable views.
# Commission is not counted here: the portal reads it from the ledger and commissions (billing/figures.py).
RollupKey = tuple[int, dt.date, int, str, str]
_COUNTERS = 8


# The columns of a rollup delta, in the order of RollupKey and the counters.
_ROLLUP_COLUMNS = (
    "partner_id", "day", "offer_id", "country", "sub1", "views", "clicks", "unique_clicks", "bots", "actions",
    "sales", "sales_minor", "billable_views",
)  # fmt: skip
_CONVERSION_COLUMNS = """event_id, ts, kind, merchant_id, offer_id, partner_id, link_id, click_id, action, order_id,
    amount_minor, currency, items, customer_ref, country, sub1, status, reason, hold_until, note, via,
    authenticated, coupon, credited_by, held_reason, held_until"""
_COMMISSION_COLUMNS = "event_id, kind, amount_minor, currency, basis"
_REFRESH_SQL = "SELECT version, to_regclass('pg_temp.cm_conversion_stage') IS NOT NULL FROM config_version"
# How often ingest folds the rollup deltas into the totals. Longer: fewer updates of a key's row (a fold updates
# each key once) but more deltas for a reader of `rollups` to add up and a longer fold, during which batches
# wait to append theirs (the bench: ~150,000 deltas in 5 s at 50,000 events/s, folded into <= 20,000 keys).
FOLD_EVERY_S = 5.0
# Per connection, made by its first batch: what a batch writes by the thousand is COPYed (binary, no
# per-value parameter encoding) into these, then moved into the real tables by one statement each.
_STAGE_SQL = f"""
    CREATE TEMP TABLE IF NOT EXISTS cm_conversion_stage ON COMMIT DELETE ROWS AS
        SELECT {_CONVERSION_COLUMNS} FROM conversions WITH NO DATA;
    CREATE TEMP TABLE IF NOT EXISTS cm_commission_stage ON COMMIT DELETE ROWS AS
        SELECT {_COMMISSION_COLUMNS} FROM commissions WITH NO DATA;"""
_CONVERSION_INSERT_SQL = f"""INSERT INTO conversions ({_CONVERSION_COLUMNS})
    SELECT {_CONVERSION_COLUMNS} FROM cm_conversion_stage ON CONFLICT (event_id) DO NOTHING"""
_COMMISSION_INSERT_SQL = f"""INSERT INTO commissions ({_COMMISSION_COLUMNS})
    SELECT {_COMMISSION_COLUMNS} FROM cm_commission_stage ON CONFLICT DO NOTHING"""
_DAYS: dict[int, dt.date] = {}
_BILLABLE = ("pending", "held")  # held: billable once the operator approves it, never paid before
_MS_PER_DAY = 86_400_000


def _day(event: dict[str, Any]) -> dt.date:
    """The UTC day of an event, from a small cache keyed by the day number (most events share a few days)."""
    number = event["ts"] // _MS_PER_DAY
    day = _DAYS.get(number)
    if day is None:
        if len(_DAYS) > 4096:
            _DAYS.clear()
        day = _DAYS[number] = (_EPOCH + dt.timedelta(days=number)).date()
    return day


def _key(event: dict[str, Any]) -> RollupKey:
    return (
        int(event.get("partner") or 0),
        _day(event),
        int(event.get("offer") or 0),
        event.get("country") or "",
        (event.get("sub1") or "")[:100],
    )


class Deriver:
    """The derive step of ingest; holds the offers' terms, reloaded when the configuration changes."""

    def __init__(self, asn_db: str | None = None) -> None:
        self.terms: dict[int, OfferTerms] = {}
        self.fraud: dict[int, fraud.Rules] = {}  # offer -> its fraud rules (billing/fraud.py)
        self.asn = fraud_facts.AsnLookup(asn_db)
        self._version: int | None = None
        self.loyalty = LoyaltyHook()  # points earned on the same events (billing/loyalty_ingest.py)
        self.fold_every_s = FOLD_EVERY_S  # ingest calls `fold` this often (billing/consumer.py)

    async def _refresh(self, conn: asyncpg.Connection) -> None:
        version, staged = await conn.fetchrow(_REFRESH_SQL)
        if not staged:  # a connection's first batch: the temp tables it COPYs into
            await conn.execute(_STAGE_SQL)
        if version != self._version:
            self.terms = await load_terms(conn)
            self.fraud = {
                r["id"]: fraud.Rules.load(r["id"], _json(r["fraud_rules"]))
                for r in await conn.fetch("SELECT id, fraud_rules FROM offers")
            }
            await self.loyalty.load(conn)
            self._version = version

    async def __call__(self, conn: asyncpg.Connection, events: list[dict[str, Any]]) -> None:
        await self._refresh(conn)
        rollups: dict[RollupKey, list[int]] = defaultdict(lambda: [0] * _COUNTERS)
        bots: Counter[tuple[int, dt.date, int, str]] = Counter()
        actions: Counter[tuple[int, dt.date, int, str]] = Counter()
        conversions: list[dict[str, Any]] = []
        refunds: list[dict[str, Any]] = []
        variants: Counter[tuple[int, dt.date, str, bool]] = Counter()  # smart link, day, variant, unique
        # Views and clicks are most of the traffic: counted here inline, one dict lookup per event.
        for event in events:
            kind = event["type"]
            if kind == "view" or kind == "click":
                get = event.get
                partner, day, offer = int(get("partner") or 0), _day(event), int(get("offer") or 0)
                key = (partner, day, offer, get("country") or "", (get("sub1") or "")[:100])
                counters = rollups.get(key)
                if counters is None:
                    counters = rollups[key] = [0] * _COUNTERS
                bot = get("bot")
                if bot:
                    counters[3] += 1
                    bots[partner, day, offer, bot] += 1
                elif kind == "view":
                    counters[0] += 1
                    if not get("refusal"):
                        counters[7] += 1  # what cpv and cpm pay
                else:
                    counters[1] += 1
                    if get("unique") and not get("refusal"):
                        counters[2] += 1
                    if "smart" in event:  # a smart link's click: counted for its variant too
                        variants[int(event["smart"]), day, str(get("variant") or ""), bool(get("unique"))] += 1
            elif kind == "refund":
                refunds.append(event)
            else:
                conversions.append(event)
        if conversions:
            await self._conversions(conn, sorted(conversions, key=lambda e: e["ts"]), rollups, actions)
        if refunds:
            await self._refunds(conn, sorted(refunds, key=lambda e: e["ts"]))
        if self.loyalty.active and (conversions or refunds):
            await self.loyalty(conn, self.terms, conversions, refunds)
        await _write_rollups(conn, rollups, bots, actions)
        if variants:
            await _write_variants(conn, variants)

    async def fold(self, conn: asyncpg.Connection) -> int:
        """Move the rollup deltas into the totals, in the caller's transaction (its own, not a batch's: it locks
        `rollup_deltas` until it commits); the number of deltas moved, 0 while another fold runs."""
        return int(await conn.fetchval("SELECT cm_fold_rollups()"))

    async def _conversions(
        self,
        conn: asyncpg.Connection,
        events: list[dict[str, Any]],
        rollups: dict[RollupKey, list[int]],
        actions: Counter[Any],
    ) -> None:
        clicks = await _inherit_click_facts(conn, events)
        merchants = {offer: t.merchant_id for offer, t in self.terms.items()}
        rules = {offer: r for offer, r in self.fraud.items() if offer in merchants}
        facts = await fraud_facts.gather(conn, events, merchants, rules, clicks, self.asn)
        orders = [(int(e["offer"]), e["order_id"]) for e in events if e.get("order_id") and e.get("offer")]
        # (offer, order id) -> the billable conversion holding it: a row already stored, or one of this batch.
        taken: dict[tuple[int, str], dict[str, Any]] = {}
        if orders:
            rows = await conn.fetch(
                f"""SELECT {supersede.HOLDER_COLUMNS} FROM conversions c
                   WHERE (offer_id, order_id) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))
                     AND status <> 'rejected'""",
                [o for o, _ in orders],
                [n for _, n in orders],
            )
            taken = {(r["offer_id"], r["order_id"]): dict(r) for r in rows}
        acted = await self._actions_taken(conn, events)
        conversion_rows: list[tuple[Any, ...]] = []
        commission_rows: list[tuple[Any, ...]] = []
        customer_rows: list[tuple[Any, ...]] = []
        # Tiers count the month's earlier billable sales: those stored, and this batch's (sorted by time) so far.
        tallied: dict[tuple[int, int, int], list[int]] = defaultdict(lambda: [0, 0])
        tallied_by: dict[str, tuple[tuple[int, int, int], int]] = {}  # event id -> its tally and the amount it added
        for event in events:
            offer_id = int(event.get("offer") or 0)
            terms = self.terms.get(offer_id)
            order = (offer_id, event["order_id"]) if event.get("order_id") else None
            holder = taken.get(order) if order else None
            if (
                holder is not None
                and not event.get("refusal")
                and supersedes(event, holder["authenticated"], holder["status"])
            ):
                if await supersede.release(conn, holder, conversion_rows, commission_rows, customer_rows):
                    supersede.take_back(rollups[supersede.rollup_key(holder)], holder)
                    del taken[order]  # type: ignore[arg-type]
                    if (counted := tallied_by.pop(holder["event_id"], None)) is not None:
                        tallied[counted[0]][0] -= 1  # a superseded sale of this batch no longer counts for tiers
                        tallied[counted[0]][1] -= counted[1]
            sales_before = amount_before = 0
            tiered = False
            if terms is not None and terms.has_tiers and event["type"] == "purchase" and event.get("partner"):
                tiered = True
                sales_before, amount_before = await _period_sales(conn, int(event["partner"]), terms, event)
                month = _month(event)
                sales_before += tallied[int(event["partner"]), offer_id, month][0]
                amount_before += tallied[int(event["partner"]), offer_id, month][1]
            once = _once_key(event, terms)
            verdict = judge(
                event, terms, order in taken if order else False, sales_before, amount_before, once in acted
            )
            if verdict.status == "pending" and event["id"] in facts:
                held = fraud.check(rules[offer_id], facts[event["id"]])
                if held is not None:  # billable, but not paid until the operator approves it
                    verdict = Verdict("held", held, verdict.lines, verdict.note)
            if tiered and terms is not None and verdict.status in _BILLABLE:
                tally_key = (int(event["partner"]), offer_id, _month(event))
                added = int(event.get("amount") or 0) if event.get("currency") == terms.currency else 0
                tallied[tally_key][0] += 1
                tallied[tally_key][1] += added
                tallied_by[event["id"]] = (tally_key, added)
            if verdict.status in _BILLABLE and once:
                acted.add(once)
            at = occurred_at(event)
            if verdict.status in _BILLABLE and order:
                taken[order] = supersede.holder(event, terms, at, len(conversion_rows))
            conversion_rows.append(_conversion_row(event, terms, verdict, at, rules.get(offer_id)))
            for line in verdict.lines:
                commission_rows.append((event["id"], line.kind, line.amount_minor, line.currency, line.basis))
            counters = rollups[_key(event)]
            counters[4] += 1
            actions[int(event.get("partner") or 0), _day(event), offer_id, event.get("action") or event["type"]] += 1
            if event["type"] == "purchase" and verdict.status in _BILLABLE:
                counters[5] += 1
                counters[6] += int(event.get("amount") or 0)
            if event.get("customer") and verdict.status in _BILLABLE and terms is not None:
                customer_rows.append(
                    (
                        terms.merchant_id,
                        int(event["partner"]),
                        str(event["customer"])[:255],
                        event["id"],
                        at,
                        int(event.get("amount") or 0),
                        event.get("currency"),
                    )
                )
        await copy(conn, "cm_conversion_stage", conversion_rows)
        await conn.execute(_CONVERSION_INSERT_SQL)
        if commission_rows:
            await copy(conn, "cm_commission_stage", commission_rows)
            await conn.execute(_COMMISSION_INSERT_SQL)
        if customer_rows:
            await conn.executemany(
                """INSERT INTO customers (merchant_id, partner_id, customer_ref, first_event_id, first_seen_at, orders,
                                          total_minor, currency)
                   VALUES ($1, $2, $3, $4, $5, 1, $6, $7)
                   ON CONFLICT (merchant_id, partner_id, customer_ref)
                   DO UPDATE SET orders = customers.orders + 1,
                                 total_minor = customers.total_minor + EXCLUDED.total_minor,
                                 currency = coalesce(customers.currency, EXCLUDED.currency)""",
                customer_rows,
            )

    async def _actions_taken(self, conn: asyncpg.Connection, events: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
        """The (offer, click id, action) of this batch's actions without order id that are already billable.

        Two workers may take batches of one shard at once: an advisory lock per key, taken in order, makes
        the second wait for the first's commit, so it then sees the first's row and rejects its repeat."""
        keys = sorted({key for e in events if (key := _once_key(e, self.terms.get(int(e.get("offer") or 0))))})
        if not keys:
            return set()
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k ORDER BY k",
            [f"action:{o}:{c}:{a}" for o, c, a in keys],
        )
        rows = await conn.fetch(
            """SELECT offer_id, click_id, coalesce(action, 'action') AS action FROM conversions
               WHERE (offer_id, click_id, coalesce(action, 'action'))
                     IN (SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[]))
                 AND kind = 'action' AND order_id IS NULL AND status <> 'rejected'""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [k[2] for k in keys],
        )
        return {(r["offer_id"], r["click_id"], r["action"]) for r in rows}

    async def _refunds(self, conn: asyncpg.Connection, events: list[dict[str, Any]]) -> None:
        """A refund reduces its order's billable conversion; reversals of paid commission are made at settle."""
        for event in events:
            offer_id, order_id = int(event.get("offer") or 0), event.get("order_id") or ""
            refused = event.get("refusal") or (None if authenticated(event) else "refund_needs_authentication")
            if refused:  # a refund undoes money: only an authenticated server-side source may send one
                await conn.execute(
                    "INSERT INTO refunds VALUES ($1, $2, $3, $4, NULL, $5, $6, $7) ON CONFLICT DO NOTHING",
                    event["id"],
                    occurred_at(event),
                    offer_id,
                    order_id,
                    int(event.get("amount") or 0),
                    event.get("currency"),
                    str(refused),
                )
                continue
            row = await conn.fetchrow(
                """SELECT event_id, amount_minor, refunded_minor FROM conversions
                   WHERE offer_id = $1 AND order_id = $2 AND status <> 'rejected' FOR UPDATE""",
                offer_id,
                order_id,
            )
            at = occurred_at(event)
            if row is None or not row["amount_minor"]:
                await conn.execute(
                    "INSERT INTO refunds VALUES ($1, $2, $3, $4, NULL, $5, $6, $7) ON CONFLICT DO NOTHING",
                    event["id"],
                    at,
                    offer_id,
                    order_id,
                    int(event.get("amount") or 0),
                    event.get("currency"),
                    "no_billable_order" if row is None else "order_without_amount",
                )
                continue
            remaining = row["amount_minor"] - row["refunded_minor"]
            amount = min(int(event["amount"]) if event.get("amount") is not None else remaining, remaining)
            await conn.execute(
                "INSERT INTO refunds VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
                event["id"],
                at,
                offer_id,
                order_id,
                row["event_id"],
                amount,
                event.get("currency"),
                None if amount > 0 else "already_refunded",
            )
            await conn.execute(
                "UPDATE conversions SET refunded_minor = refunded_minor + $2 WHERE event_id = $1",
                row["event_id"],
                amount,
            )


def _once_key(event: dict[str, Any], terms: OfferTerms | None) -> tuple[int, str, str] | None:
    """An action without order id counts once per click and action name, unless its offer pays repeats."""
    if event["type"] != "action" or event.get("order_id") or not event.get("click_id") or terms is None:
        return None
    if terms.repeat_actions or event.get("refusal"):
        return None
    return (terms.id, str(event["click_id"]), str(event.get("action") or "action"))


def _conversion_row(
    event: dict[str, Any], terms: OfferTerms | None, verdict: Verdict, at: dt.datetime, rules: fraud.Rules | None = None
) -> tuple[Any, ...]:
    items = event.get("items")
    hold = terms.hold if terms is not None else dt.timedelta(0)
    held = verdict.status == "held"
    return (
        event["id"],
        at,
        event["type"],
        terms.merchant_id if terms else 0,
        int(event.get("offer") or 0),
        int(event.get("partner") or 0),
        event.get("link"),
        event.get("click_id"),
        event.get("action"),
        event.get("order_id"),
        event.get("amount"),
        event.get("currency"),
        orjson.dumps(items).decode() if items else None,
        (str(event["customer"])[:255] if event.get("customer") else None),
        event.get("country") or "",
        (event.get("sub1") or "")[:100],
        verdict.status,
        None if held else verdict.reason,
        at + hold,
        verdict.note,
        event.get("via"),
        authenticated(event),
        event.get("coupon"),
        event.get("credited_by"),
        verdict.reason if held else None,
        at + dt.timedelta(days=rules.hold_days) if held and rules is not None else None,
    )


async def _inherit_click_facts(conn: asyncpg.Connection, events: list[dict[str, Any]]) -> dict[str, asyncpg.Record]:
    """A conversion is counted under the sub id and country of the click that brought it, not the merchant's
    server; a click recorded as a bot is remembered, so that its conversions are rejected. Returns the clicks
    (time, network, referrer) by click id, for the fraud rules."""
    click_ids = list({e["click_id"] for e in events if e.get("click_id")})
    if not click_ids:
        return {}
    rows = await conn.fetch(
        """SELECT click_id, sub1, country, bot_reason, ts, ip_prefix, payload->>'referrer' AS referrer
           FROM events WHERE type = 'click' AND click_id = ANY($1::text[])""",
        click_ids,
    )
    facts = {r["click_id"]: (r["sub1"] or "", r["country"], r["bot_reason"]) for r in rows}
    for event in events:
        found = facts.get(event.get("click_id") or "")
        if found is not None:
            event["sub1"], event["country"], bot = found
            if bot:
                event["click_bot"] = bot  # a conversion on a bot's click is never paid
    return {r["click_id"]: r for r in rows}


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return orjson.loads(value)
    return dict(value or {})


def _month(event: dict[str, Any]) -> int:
    """The UTC month of an event, as a number (year * 12 + month)."""
    day = _day(event)
    return day.year * 12 + day.month


async def _period_sales(
    conn: asyncpg.Connection, partner_id: int, terms: OfferTerms, event: dict[str, Any]
) -> tuple[int, int]:
    """What tiers count: the billable (pending or approved) sales of this partner and offer stored so far with
    an earlier time in the event's UTC month, and their amount in the offer's currency (a sale in another
    currency counts as a sale, not towards min_amount)."""
    at = occurred_at(event)
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    row = await conn.fetchrow(
        """SELECT count(*) AS n, coalesce(sum(amount_minor) FILTER (WHERE currency = $5), 0)::bigint AS amount
           FROM conversions
           WHERE partner_id = $1 AND offer_id = $2 AND kind = 'purchase' AND status IN ('pending', 'approved')
             AND ts >= $3 AND ts < $4""",
        partner_id,
        terms.id,
        start,
        at,
        terms.currency,
    )
    return int(row["n"]), int(row["amount"])


async def _write_variants(conn: asyncpg.Connection, variants: Counter[tuple[int, dt.date, str, bool]]) -> None:
    """The clicks (and unique clicks) each smart-link variant received, per UTC day; rows locked in key order."""
    summed: dict[tuple[int, dt.date, str], list[int]] = defaultdict(lambda: [0, 0])
    for (link, day, name, unique), n in variants.items():
        summed[link, day, name][0] += n
        if unique:
            summed[link, day, name][1] += n
    keys = sorted(summed)
    await conn.execute(
        """INSERT INTO rollup_variants AS v (link_id, day, variant, clicks, unique_clicks)
           SELECT * FROM unnest($1::bigint[], $2::date[], $3::text[], $4::bigint[], $5::bigint[])
           ON CONFLICT (link_id, day, variant)
           DO UPDATE SET clicks = v.clicks + EXCLUDED.clicks,
                         unique_clicks = v.unique_clicks + EXCLUDED.unique_clicks""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [summed[k][0] for k in keys],
        [summed[k][1] for k in keys],
    )


async def _write_rollups(
    conn: asyncpg.Connection, rollups: dict[RollupKey, list[int]], bots: Counter[Any], actions: Counter[Any]
) -> None:
    # A batch has thousands of rollup keys: appended by COPY (binary, no per-value array encoding), folded
    # into the totals later. The few rows of bots and actions are upserted, locked in one global order (sorted
    # keys, tables always in this order), so concurrent shard consumers wait for each other instead of
    # deadlocking.
    if rollups:
        await copy(conn, "rollup_deltas", [key + tuple(counters) for key, counters in rollups.items()], _ROLLUP_COLUMNS)
    for table, column, counter in (("rollup_bots", "reason", bots), ("rollup_actions", "action", actions)):
        if counter:
            keys = sorted(counter)
            await conn.execute(
                f"""INSERT INTO {table} AS t (partner_id, day, offer_id, {column}, events)
                    SELECT * FROM unnest($1::bigint[], $2::date[], $3::bigint[], $4::text[], $5::bigint[])
                    ON CONFLICT (partner_id, day, offer_id, {column})
                    DO UPDATE SET events = t.events + EXCLUDED.events""",
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [k[3] for k in keys],
                [counter[k] for k in keys],
            )
