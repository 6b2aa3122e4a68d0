"""Loyalty, the ingest hook: points earned by the batch's new conversions, and taken back by its refunds.

Called by billing/derive.py after it stored the batch's conversions and refunds, in the same transaction,
only with events this transaction made new; the lots are unique on (event, rule) and on (order, rule), so
an entry delivered twice, two workers or a kill -9 between commit and ack never earn twice.

What earns: an action or purchase with a customer id, from an authenticated source (a signed or token
postback: a pixel proves nothing, and anyone could fire one with their own customer id), of a merchant
whose programme is on, whose conversion is billable (pending) or was refused only for its partner
(`unattributed`, `over_cap`: the customer bought all the same). A purchase's lot is pending until its
conversion's hold ends (billing/loyalty_ledger.activate_due); an action's lot is active at once.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import asyncpg

from billing import loyalty_ledger as ledger
from billing import loyalty_referral
from billing.attribution import authenticated, occurred_at
from kernel.loyalty_rules import Programme, cumulative_share, earnings

EARNING_STATUSES = {("pending", None), ("rejected", "unattributed"), ("rejected", "over_cap")}
_LOT_COLUMNS = (
    "merchant_id, customer_ref, source, rule, order_key, amount_minor, points, status, earned_at, available_at,"
    " expires_at"
)


class LoyaltyHook:
    """Holds the enabled programmes (reloaded by the Deriver with the offers' terms)."""

    def __init__(self) -> None:
        self.programmes: dict[int, Programme] = {}
        self.referrals: dict[int, tuple[int, str, dict[str, int]]] = {}  # referral partner -> referrer

    async def load(self, conn: asyncpg.Connection) -> None:
        exists = await conn.fetchval("SELECT to_regclass('loyalty_programmes') IS NOT NULL")
        self.programmes = await ledger.load_programmes(conn) if exists else {}
        self.referrals = await loyalty_referral.load(conn) if self.programmes else {}

    @property
    def active(self) -> bool:
        return bool(self.programmes)

    async def __call__(
        self,
        conn: asyncpg.Connection,
        terms: dict[int, Any],
        conversions: list[dict[str, Any]],
        refunds: list[dict[str, Any]],
    ) -> None:
        earning = []
        for event in conversions:
            term = terms.get(int(event.get("offer") or 0))
            if term is None or term.merchant_id not in self.programmes:
                continue
            if event.get("customer") and not event.get("refusal") and authenticated(event):
                earning.append((term.merchant_id, event))
        if earning:
            await self._earn(conn, earning)
        if refunds:
            await self._refund(conn, terms, refunds)

    async def _earn(self, conn: asyncpg.Connection, earning: list[tuple[int, dict[str, Any]]]) -> None:
        rows = await conn.fetch(
            "SELECT event_id::text AS id, status, reason, hold_until FROM conversions WHERE event_id = ANY($1::uuid[])",
            [e["id"] for _, e in earning],
        )
        verdicts = {r["id"]: r for r in rows}
        members: dict[tuple[int, str], dict[str, Any]] = {}
        for merchant_id, event in earning:
            verdict = verdicts.get(event["id"])
            if verdict is None or (verdict["status"], verdict["reason"]) not in EARNING_STATUSES:
                continue
            customer = str(event["customer"])[:255]
            at = occurred_at(event)
            member = members.setdefault(
                (merchant_id, customer), {"at": at, "partner": event.get("partner"), "events": []}
            )
            member["at"] = min(member["at"], at)
            member["events"].append((event, verdict["hold_until"], at))
        if not members:
            return
        keys = sorted(members)
        known = []
        if any(self.programmes[k[0]].tiers.levels for k in keys):  # a tier multiplies: the members' tiers
            known = await conn.fetch(
                """SELECT merchant_id, customer_ref, tier FROM loyalty_members
                   WHERE (merchant_id, customer_ref) IN (SELECT * FROM unnest($1::bigint[], $2::text[]))""",
                [k[0] for k in keys],
                [k[1] for k in keys],
            )
        tiers = {(r["merchant_id"], r["customer_ref"]): r["tier"] for r in known}
        lots: list[tuple[Any, ...]] = []
        for key in keys:
            prog = self.programmes[key[0]]
            for event, hold_until, at in members[key]["events"]:
                purchase = event["type"] == "purchase"
                order_key = f"{event.get('offer')}:{event['order_id']}" if event.get("order_id") else None
                available = hold_until if purchase else at
                expires = available + dt.timedelta(days=prog.expiry_days) if prog.expiry_days else None
                for earned in earnings(prog, event, at, tiers.get(key)):
                    lots.append(
                        (key[0], key[1], event["id"], earned.rule, order_key, earned.amount_minor, earned.points,
                         "pending" if purchase else "active", at, available, expires)
                    )  # fmt: skip
                if purchase and self.referrals:  # a friend's first purchase through a member's referral link
                    lots += await loyalty_referral.lots(conn, self.referrals, prog, event, key[1], hold_until, at)
        if not lots:
            return
        keys = sorted({(lot[0], lot[1]) for lot in lots})
        # Enrolled on the first event that earns; locked in one order so two shards' batches never deadlock.
        await conn.execute(
            """INSERT INTO loyalty_members (merchant_id, customer_ref, enrolled_at, first_partner_id)
               SELECT m, c, a, nullif(p, 0) FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::bigint[])
                    AS u(m, c, a, p) ORDER BY m, c
               ON CONFLICT DO NOTHING""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [members[k]["at"] if k in members else dt.datetime.now(dt.UTC) for k in keys],
            [int(members[k]["partner"] or 0) if k in members else 0 for k in keys],
        )
        # Only members whose balance moves now (an action's points) are locked, in one order so that two shards'
        # batches never deadlock; a purchase's pending lot changes no balance and locks nothing.
        moving = sorted({(lot[0], lot[1]) for lot in lots if lot[7] == "active"})
        locked = []
        if moving:
            locked = await conn.fetch(
                """SELECT merchant_id, customer_ref, debt FROM loyalty_members WHERE (merchant_id, customer_ref) IN
                       (SELECT * FROM unnest($1::bigint[], $2::text[]))
                   ORDER BY merchant_id, customer_ref FOR NO KEY UPDATE""",
                [k[0] for k in moving],
                [k[1] for k in moving],
            )
        by_member = {(r["merchant_id"], r["customer_ref"]): r for r in locked}
        # An action's lot is active at once: its points enter the lot's remainder in the INSERT, unless the member
        # is in debt (then the debt is paid off first, lot by lot, below).
        rows = [(*lot, lot[6] if lot[7] == "active" and not by_member[(lot[0], lot[1])]["debt"] else 0) for lot in lots]
        columns = list(zip(*rows, strict=True))
        made = await conn.fetch(
            f"""INSERT INTO loyalty_lots ({_LOT_COLUMNS}, remaining)
                SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[],
                                     $6::bigint[], $7::bigint[], $8::text[], $9::timestamptz[],
                                     $10::timestamptz[], $11::timestamptz[], $12::bigint[])
                ON CONFLICT DO NOTHING RETURNING id, merchant_id, customer_ref, points, status, earned_at, remaining""",
            *[list(c) for c in columns],
        )
        active_lots = [lot for lot in made if lot["status"] == "active"]
        if not active_lots:
            return
        # One entry per lot and one balance change per member, each in one statement.
        await conn.execute(
            """INSERT INTO loyalty_entries (key, merchant_id, customer_ref, kind, points, lot_id, occurred_at)
               SELECT 'earn:' || l, m, c, 'earn', p, l, t
               FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[], $5::timestamptz[])
                    AS u(l, m, c, p, t)""",
            [lot["id"] for lot in active_lots],
            [lot["merchant_id"] for lot in active_lots],
            [lot["customer_ref"] for lot in active_lots],
            [lot["points"] for lot in active_lots],
            [lot["earned_at"] for lot in active_lots],
        )
        gained: dict[tuple[int, str], int] = defaultdict(int)
        for lot in active_lots:
            gained[(lot["merchant_id"], lot["customer_ref"])] += lot["points"]
        keys = sorted(gained)
        await conn.execute(
            """UPDATE loyalty_members m SET balance = m.balance + u.p
               FROM unnest($1::bigint[], $2::text[], $3::bigint[]) AS u(mid, c, p)
               WHERE m.merchant_id = u.mid AND m.customer_ref = u.c""",
            [k[0] for k in keys],
            [k[1] for k in keys],
            [gained[k] for k in keys],
        )
        for lot in active_lots:
            if lot["remaining"] == 0 and lot["points"] > 0:  # a member in debt: it pays it off from these points
                member = await conn.fetchrow(
                    "SELECT * FROM loyalty_members WHERE merchant_id = $1 AND customer_ref = $2",
                    lot["merchant_id"],
                    lot["customer_ref"],
                )
                await ledger.credit_lot(conn, member, lot["id"], lot["points"])

    async def _refund(self, conn: asyncpg.Connection, terms: dict[int, Any], refunds: list[dict[str, Any]]) -> None:
        """A refund of an earning purchase: pending points are cancelled, active ones reversed by the policy,
        in proportion to the share of the sale refunded (cumulatively, rounded down)."""
        ids = [
            e["id"]
            for e in refunds
            if (t := terms.get(int(e.get("offer") or 0))) is not None and t.merchant_id in self.programmes
        ]
        if not ids:
            return
        rows = await conn.fetch(
            """SELECT r.event_id::text AS refund, r.amount_minor, r.conversion_id::text AS conversion,
                      c.amount_minor AS sale, c.refunded_minor
               FROM refunds r JOIN conversions c ON c.event_id = r.conversion_id
               WHERE r.event_id = ANY($1::uuid[]) AND r.amount_minor > 0 AND r.reason IS NULL""",
            ids,
        )
        per_conversion: dict[str, list[Any]] = defaultdict(list)
        for row in rows:
            per_conversion[row["conversion"]].append(row)
        for conversion in sorted(per_conversion):
            got = per_conversion[conversion]
            after = got[0]["refunded_minor"]
            before = after - sum(r["amount_minor"] for r in got)
            key_event = max(r["refund"] for r in got)
            lots = await conn.fetch(
                "SELECT id, merchant_id, customer_ref, points FROM loyalty_lots WHERE source = $1 ORDER BY id",
                conversion,
            )
            if not lots:
                continue
            prog = self.programmes.get(lots[0]["merchant_id"])
            if prog is None:
                continue
            for owner in sorted({(lot["merchant_id"], lot["customer_ref"]) for lot in lots}):  # a referral's two
                await ledger.lock_member(conn, *owner)
            sale = got[0]["sale"]
            now = dt.datetime.now(dt.UTC)
            for lot in lots:
                # Each lot loses its share of the refunded part of the sale; a sku lot counts its items' amount.
                points = cumulative_share(lot["points"], after, sale) - cumulative_share(lot["points"], before, sale)
                await ledger.reverse_lot(conn, prog, lot["id"], points, f"reverse:{key_event}:{lot['id']}", now)
