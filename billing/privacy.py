"""Privacy purge: erase one customer's or one partner's personal data on request; the money stays whole.

A purge runs in one transaction, replaces each identifier it erases with a tombstone
(`purged-<16 hex>`, one per request) and writes an append-only `privacy_requests` row naming
what it changed. The identifier itself is kept nowhere, only a SHA-256 of it.

Customer (`purge customer ID --merchant SLUG`; ID is what the merchant sent as `customer_id`,
its own id or a hash of it):

- `conversions.customer_ref` and `customers.customer_ref` become the tombstone (the customer's
  order count and totals stay, under the tombstone);
- the raw events of its conversions, of refunds of its orders and of the clicks that brought them
  lose the anonymised address (`ip_prefix`), user agent, sub ids and source, in their columns and
  in the stored payload, whose `customer` becomes the tombstone;
- outbound postback deliveries of those events lose their filled-in URL (pending ones are failed);
- its loyalty membership (balance, lots, redemptions, entries) goes on under the tombstone, totals unchanged,
  and stored checkout answers that named it name the tombstone.

Partner (`purge partner ID`): e-mail and name become tombstones, as do its portal users'
e-mails and names (disabled, password, sessions and API keys gone); its postback URLs and their
delivery URLs are erased; its unsent mail is deleted and sent mail emptied.

Kept, and why:

- Money records are not touched: ledger lines, statements, commissions, refunds, amounts,
  order ids (the merchant's own order numbers, which refunds and duplicate checks match on and
  which closed statements print) and event ids. None of them holds a customer identifier.
- A partner's name is kept when it has a closed or paid statement: a closed statement is a
  financial record whose CSV and PDF bytes are pinned by SHA-256 and print the partner's name,
  and bookkeeping law requires keeping issued statements (GDPR art. 17(3)(b)). Its e-mail and
  everything else still goes; with only open statements the name goes too.
- `conversions.sub1`, `rollups.sub1` and `ledger_splits.sub1` are kept: they are the keys live
  statistics and the commission by sub id are counted under, shared by every visitor of that sub id;
  the per-visitor copies in the raw events are erased.
- The portal's `audit_log` is append-only by trigger (who did what); actor e-mails in it stay.
- Redis: acknowledged stream entries are trimmed after `CLICKMINT_STREAM_RETENTION_S`; entries
  in the dead-letter streams are not searched.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from billing import loyalty_ledger

TOMBSTONE_PREFIX = "purged-"
TOMBSTONE_DOMAIN = "purged.invalid"  # RFC 2606: never delivers
PURGED_URL = "https://purged.invalid/"
# Payload keys that may carry personal data: the anonymised address, user agent, partner sub ids.
PERSONAL_KEYS = ["ip", "ua", "sub1", "sub2", "sub3", "sub4", "sub5", "source", "customer"]

CUSTOMER_KEPT = (
    "ledger lines, statements, commissions, refunds, order ids and amounts (money records, no customer data); "
    "conversions.sub1, rollups.sub1 and ledger_splits.sub1 (shared statistics keys)"
)
PARTNER_KEPT = "ledger lines, statements and amounts; the portal audit log (append-only)"
PARTNER_NAME_KEPT = "; the partner name (printed on closed statements, whose exports are pinned)"


class PurgeError(ValueError):
    """A purge that cannot be done: an unknown merchant or partner, an empty identifier."""


@dataclass
class PurgeReport:
    request_id: int
    kind: str
    tombstone: str
    counts: dict[str, int] = field(default_factory=dict)
    kept: str = ""

    def summary(self) -> str:
        changed = ", ".join(f"{table} {n}" for table, n in sorted(self.counts.items()) if n) or "nothing found"
        return (
            f"privacy request {self.request_id}: {self.kind} purged, identifiers replaced by {self.tombstone}; "
            f"rows changed: {changed}\nkept: {self.kept}"
        )


def tombstone() -> str:
    return TOMBSTONE_PREFIX + secrets.token_hex(8)


def subject_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _rows(status: str) -> int:
    """The row count of an UPDATE/DELETE command tag."""
    return int(status.split()[-1])


async def _exists(conn: asyncpg.Connection, table: str) -> bool:
    """Tables of other parts (the portal's) are purged when the schema has them."""
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table))


async def _record(
    conn: asyncpg.Connection,
    kind: str,
    subject: str,
    stone: str,
    counts: dict[str, int],
    kept: str,
    requested_by: str,
    merchant_id: int | None = None,
    partner_id: int | None = None,
) -> int:
    return int(
        await conn.fetchval(
            """INSERT INTO privacy_requests (kind, merchant_id, partner_id, subject_sha256, tombstone, requested_by,
                                            counts, kept)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id""",
            kind,
            merchant_id,
            partner_id,
            subject_hash(subject),
            stone,
            requested_by,
            orjson.dumps(counts).decode(),
            kept,
        )
    )


async def purge_customer(
    conn: asyncpg.Connection, merchant_slug: str, identifier: str, requested_by: str = ""
) -> PurgeReport:
    """Erase one of a merchant's customers (module docstring: what goes, what stays and why)."""
    identifier = identifier.strip()
    if not identifier:
        raise PurgeError("a customer identifier is needed")
    stone = tombstone()
    counts: dict[str, int] = {}
    async with conn.transaction():
        merchant_id = await conn.fetchval("SELECT id FROM merchants WHERE slug = $1", merchant_slug)
        if merchant_id is None:
            raise PurgeError(f"no merchant {merchant_slug!r}")
        offers = [r["id"] for r in await conn.fetch("SELECT id FROM offers WHERE merchant_id = $1", merchant_id)]
        conversions = await conn.fetch(
            """SELECT event_id, click_id, order_id FROM conversions
               WHERE customer_ref = $1 AND (merchant_id = $2 OR offer_id = ANY($3::bigint[]))""",
            identifier,
            merchant_id,
            offers,
        )
        orders = sorted({r["order_id"] for r in conversions if r["order_id"]})
        # The payload is searched too: an event whose conversion row is gone, or a refund that named the customer.
        # A scan of the merchant's conversion events; rare enough (an operator's request) to afford it.
        events = await conn.fetch(
            """SELECT id, ts, click_id FROM events
               WHERE type IN ('action', 'purchase', 'refund') AND offer_id = ANY($1::bigint[])
                 AND (payload->>'customer' = $2 OR id = ANY($3::uuid[])
                      OR (type = 'refund' AND order_id = ANY($4::text[])))""",
            offers,
            identifier,
            [r["event_id"] for r in conversions],
            orders,
        )
        click_ids = sorted({r["click_id"] for r in [*conversions, *events] if r["click_id"]})
        clicks = await conn.fetch(
            "SELECT id, ts FROM events WHERE type = 'click' AND click_id = ANY($1::text[])", click_ids
        )
        touched = [*events, *clicks]
        counts["events"] = _rows(
            await conn.execute(
                """UPDATE events e SET ip_prefix = '', sub1 = NULL, sub2 = NULL, sub3 = NULL, sub4 = NULL,
                                       sub5 = NULL, source = NULL,
                       payload = (CASE WHEN e.payload::jsonb ? 'customer'
                                       THEN (e.payload::jsonb - $3::text[]) || jsonb_build_object('customer', $4::text)
                                       ELSE e.payload::jsonb - $3::text[] END)::json
                   FROM unnest($1::uuid[], $2::timestamptz[]) AS t(id, ts)
                   WHERE e.id = t.id AND e.ts = t.ts""",
                [r["id"] for r in touched],
                [r["ts"] for r in touched],
                PERSONAL_KEYS,
                stone,
            )
        )
        counts["conversions"] = _rows(
            await conn.execute(
                """UPDATE conversions SET customer_ref = $1
                   WHERE customer_ref = $2 AND (merchant_id = $3 OR offer_id = ANY($4::bigint[]))""",
                stone,
                identifier,
                merchant_id,
                offers,
            )
        )
        counts["customers"] = _rows(
            await conn.execute(
                "UPDATE customers SET customer_ref = $1 WHERE merchant_id = $2 AND customer_ref = $3",
                stone,
                merchant_id,
                identifier,
            )
        )
        if await _exists(conn, "postback_deliveries"):
            counts["postback_deliveries"] = _rows(
                await conn.execute(
                    """UPDATE postback_deliveries
                       SET url = $2, last_error = NULL,
                           status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END
                       WHERE event_id = ANY($1::uuid[])""",
                    list({r["id"] for r in touched}),
                    PURGED_URL,
                )
            )
        counts.update(await loyalty_ledger.purge_member(conn, merchant_id, identifier, stone))
        request_id = await _record(
            conn,
            "customer",
            f"{merchant_id}:{identifier}",
            stone,
            counts,
            CUSTOMER_KEPT,
            requested_by,
            merchant_id=merchant_id,
        )
    return PurgeReport(request_id, "customer", stone, counts, CUSTOMER_KEPT)


async def purge_partner(conn: asyncpg.Connection, partner_id: int, requested_by: str = "") -> PurgeReport:
    """Erase a partner's contact data and its portal users' (module docstring: what stays and why)."""
    stone = tombstone()
    counts: dict[str, int] = {}
    async with conn.transaction():
        partner = await conn.fetchrow("SELECT id, email FROM partners WHERE id = $1 FOR UPDATE", partner_id)
        if partner is None:
            raise PurgeError(f"no partner {partner_id}")
        keep_name = bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM statements WHERE partner_id = $1 AND status <> 'open')", partner_id
            )
        )
        emails = {partner["email"].lower()}
        counts["partners"] = _rows(
            await conn.execute(
                "UPDATE partners SET email = $2, name = CASE WHEN $3 THEN name ELSE $4 END WHERE id = $1",
                partner_id,
                f"{stone}@{TOMBSTONE_DOMAIN}",
                keep_name,
                stone,
            )
        )
        if await _exists(conn, "notifications"):  # migration 0015: the profile's website and payout details
            await conn.execute("UPDATE partners SET website = NULL, payout_details = NULL WHERE id = $1", partner_id)
            counts["notifications_deleted"] = _rows(
                await conn.execute("DELETE FROM notifications WHERE partner_id = $1", partner_id)
            )
            await conn.execute(
                "UPDATE partner_programmes SET site_url = NULL, promotion = NULL WHERE partner_id = $1", partner_id
            )
            counts["partner_notes_deleted"] = _rows(
                await conn.execute("DELETE FROM partner_notes WHERE partner_id = $1", partner_id)
            )
        if await _exists(conn, "users"):
            emails |= await _purge_users(conn, partner_id, stone, counts)
        if await _exists(conn, "outbox"):
            counts["outbox_deleted"] = _rows(
                await conn.execute(
                    "DELETE FROM outbox WHERE lower(to_email) = ANY($1::text[]) AND sent_at IS NULL", sorted(emails)
                )
            )
            counts["outbox"] = _rows(
                await conn.execute(
                    "UPDATE outbox SET to_email = $2, subject = '', body = '' WHERE lower(to_email) = ANY($1::text[])",
                    sorted(emails),
                    f"{stone}@{TOMBSTONE_DOMAIN}",
                )
            )
        if await _exists(conn, "partner_postbacks"):
            await _purge_postbacks(conn, partner_id, counts)
        if await _exists(conn, "partner_payout_details"):  # bank and tax details: issued invoices keep theirs
            counts["payout_details"] = _rows(
                await conn.execute("DELETE FROM partner_payout_details WHERE partner_id = $1", partner_id)
            )
        kept = PARTNER_KEPT + (PARTNER_NAME_KEPT if keep_name else "")
        request_id = await _record(
            conn, "partner", f"partner:{partner_id}", stone, counts, kept, requested_by, partner_id=partner_id
        )
    return PurgeReport(request_id, "partner", stone, counts, kept)


async def _purge_users(conn: asyncpg.Connection, partner_id: int, stone: str, counts: dict[str, Any]) -> set[str]:
    """The partner's portal logins: disabled, e-mail and name erased, no password, sessions or live keys."""
    users = await conn.fetch("SELECT id, email FROM users WHERE partner_id = $1 FOR UPDATE", partner_id)
    ids = [u["id"] for u in users]
    counts["users"] = _rows(
        await conn.execute(
            """UPDATE users SET email = $2 || '+' || id || '@' || $3, name = '', password_hash = NULL,
                                status = 'disabled'
               WHERE id = ANY($1::bigint[])""",
            ids,
            stone,
            TOMBSTONE_DOMAIN,
        )
    )
    if await _exists(conn, "sessions"):
        counts["sessions"] = _rows(await conn.execute("DELETE FROM sessions WHERE user_id = ANY($1::bigint[])", ids))
    if await _exists(conn, "api_keys"):
        counts["api_keys"] = _rows(
            await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE user_id = ANY($1::bigint[]) AND revoked_at IS NULL", ids
            )
        )
    return {u["email"].lower() for u in users}


async def _purge_postbacks(conn: asyncpg.Connection, partner_id: int, counts: dict[str, Any]) -> None:
    """The partner's own server URLs (and the filled-in ones of each delivery) are its data: erased."""
    postbacks = [
        r["id"] for r in await conn.fetch("SELECT id FROM partner_postbacks WHERE partner_id = $1", partner_id)
    ]
    counts["partner_postbacks"] = _rows(
        await conn.execute(
            "UPDATE partner_postbacks SET url = $2, secret = '', status = 'deleted' WHERE id = ANY($1::bigint[])",
            postbacks,
            PURGED_URL,
        )
    )
    if await _exists(conn, "postback_deliveries"):
        counts["postback_deliveries"] = _rows(
            await conn.execute(
                """UPDATE postback_deliveries
                   SET url = $2, last_error = NULL,
                       status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END
                   WHERE postback_id = ANY($1::bigint[])""",
                postbacks,
                PURGED_URL,
            )
        )
