"""Partners' outbound postbacks: the partner's own URL called on each of its conversions, macros
filled in, signed with its secret, retried with exponential backoff, every attempt logged.

Signature: X-Clickmint-Signature = hex HMAC-SHA256(secret, "<X-Clickmint-Timestamp>.<url>").
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import ssl
import time
from typing import Any
from urllib.parse import quote, urlsplit

import asyncpg

from billing.money import format_amount
from portal.errors import ApiError, not_found

log = logging.getLogger("clickmint.postbacks")
MACROS = (
    "click_id",
    "event_id",
    "order_id",
    "action",
    "amount",
    "currency",
    "status",
    "offer_id",
    "sub1",
    "commission",
)
MAX_ATTEMPTS = 8
BASE_DELAY_S = 30
TIMEOUT_S = 10.0
MAX_PER_PARTNER = 10


async def listing(conn: asyncpg.Connection, partner_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        """SELECT p.id, p.url, p.secret, p.events, p.created_at,
                  count(d.*) FILTER (WHERE d.status = 'delivered') AS delivered,
                  count(d.*) FILTER (WHERE d.status = 'pending') AS pending,
                  count(d.*) FILTER (WHERE d.status = 'failed') AS failed
           FROM partner_postbacks p LEFT JOIN postback_deliveries d ON d.postback_id = p.id
           WHERE p.partner_id = $1 AND p.status = 'active' GROUP BY p.id ORDER BY p.id""",
        partner_id,
    )
    return [{**dict(r), "created_at": r["created_at"].isoformat(), "macros": list(MACROS)} for r in rows]


async def create(conn: asyncpg.Connection, partner_id: int, url: str, events: list[str]) -> dict[str, Any]:
    count = await conn.fetchval(
        "SELECT count(*) FROM partner_postbacks WHERE partner_id = $1 AND status = 'active'", partner_id
    )
    if count >= MAX_PER_PARTNER:
        raise ApiError(409, "too_many", f"at most {MAX_PER_PARTNER} postbacks per partner")
    row = await conn.fetchrow(
        """INSERT INTO partner_postbacks (partner_id, url, secret, events) VALUES ($1, $2, $3, $4)
           RETURNING id, url, secret, events, created_at""",
        partner_id,
        url,
        secrets.token_urlsafe(24),
        events,
    )
    return {**dict(row), "created_at": row["created_at"].isoformat(), "macros": list(MACROS)}


async def delete(conn: asyncpg.Connection, partner_id: int, postback_id: int) -> None:
    done = await conn.execute(
        "UPDATE partner_postbacks SET status = 'deleted' WHERE id = $1 AND partner_id = $2 AND status = 'active'",
        postback_id,
        partner_id,
    )
    if done.endswith(" 0"):
        raise not_found("postback")


async def deliveries(conn: asyncpg.Connection, partner_id: int, postback_id: int) -> list[dict[str, Any]]:
    if not await conn.fetchval(
        "SELECT 1 FROM partner_postbacks WHERE id = $1 AND partner_id = $2", postback_id, partner_id
    ):
        raise not_found("postback")
    rows = await conn.fetch(
        """SELECT id, event_id::text AS event_id, url, status, attempts, last_status, last_error, created_at,
                  delivered_at, next_attempt_at
           FROM postback_deliveries WHERE postback_id = $1 ORDER BY id DESC LIMIT 200""",
        postback_id,
    )
    return [{k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in dict(r).items()} for r in rows]


def render(template: str, values: dict[str, str]) -> str:
    out = template
    for name in MACROS:
        out = out.replace("{" + name + "}", quote(values.get(name, ""), safe=""))
    return out


def sign(secret: str, timestamp: int, url: str) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.{url}".encode(), hashlib.sha256).hexdigest()


async def enqueue(conn: asyncpg.Connection, limit: int = 1000) -> int:
    """Queue a delivery for every conversion of a partner with a postback that has none yet."""
    rows = await conn.fetch(
        """SELECT p.id AS postback_id, p.url AS template, c.event_id, c.click_id, c.order_id, c.action,
                  c.amount_minor, coalesce(c.currency, o.currency) AS currency, c.status, c.offer_id, c.sub1,
                  o.currency AS offer_currency,
                  coalesce((SELECT sum(amount_minor) FROM commissions k WHERE k.event_id = c.event_id), 0)::bigint
                      AS commission_minor
           FROM partner_postbacks p
           JOIN conversions c ON c.partner_id = p.partner_id AND c.kind = ANY(p.events) AND c.ts >= p.created_at
           JOIN offers o ON o.id = c.offer_id
           WHERE p.status = 'active'
             AND NOT EXISTS (SELECT 1 FROM postback_deliveries d WHERE d.postback_id = p.id AND d.event_id = c.event_id)
           ORDER BY c.ts LIMIT $1""",
        limit,
    )
    if not rows:
        return 0
    records = []
    for r in rows:
        values = {
            "click_id": r["click_id"] or "",
            "event_id": str(r["event_id"]),
            "order_id": r["order_id"] or "",
            "action": r["action"] or "",
            "amount": format_amount(r["amount_minor"], r["currency"]) if r["amount_minor"] is not None else "",
            "currency": r["currency"] or "",
            "status": r["status"],
            "offer_id": str(r["offer_id"]),
            "sub1": r["sub1"] or "",
            "commission": format_amount(r["commission_minor"], r["offer_currency"]),
        }
        records.append((r["postback_id"], r["event_id"], render(r["template"], values)))
    await conn.executemany(
        """INSERT INTO postback_deliveries (postback_id, event_id, url) VALUES ($1, $2, $3)
           ON CONFLICT (postback_id, event_id) DO NOTHING""",
        records,
    )
    return len(records)


async def http_get(url: str, headers: dict[str, str], timeout: float = TIMEOUT_S) -> int:
    """One GET over HTTP/1.1 (TLS for https); the response status. Bodies are not read past the status line."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = ssl.create_default_context() if parts.scheme == "https" else None
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port, ssl=context), timeout)
    try:
        lines = [
            f"GET {target} HTTP/1.1",
            f"Host: {parts.netloc}",
            "User-Agent: Clickmint-Postback/1",
            "Connection: close",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        fields = status_line.split()
        if len(fields) < 2 or not fields[1].isdigit():
            raise OSError(f"not an HTTP response: {status_line[:60]!r}")
        return int(fields[1])
    finally:
        writer.close()


async def deliver_due(conn: asyncpg.Connection, limit: int = 50) -> int:
    """Attempt the deliveries that are due; 2xx delivers, anything else retries later with backoff."""
    async with conn.transaction():
        rows = await conn.fetch(
            """SELECT d.id, d.url, d.attempts, p.secret FROM postback_deliveries d
               JOIN partner_postbacks p ON p.id = d.postback_id
               WHERE d.status = 'pending' AND d.next_attempt_at <= now()
               ORDER BY d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED""",
            limit,
        )
        for row in rows:
            timestamp = int(time.time())
            headers = {
                "X-Clickmint-Timestamp": str(timestamp),
                "X-Clickmint-Signature": sign(row["secret"], timestamp, row["url"]),
            }
            status, error = None, None
            try:
                status = await http_get(row["url"], headers)
            except (OSError, TimeoutError, ssl.SSLError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:300]
            attempts = row["attempts"] + 1
            if status is not None and 200 <= status < 300:
                await conn.execute(
                    """UPDATE postback_deliveries SET status = 'delivered', attempts = $2, last_status = $3,
                              last_error = NULL, delivered_at = now() WHERE id = $1""",
                    row["id"],
                    attempts,
                    status,
                )
                continue
            final = attempts >= MAX_ATTEMPTS
            await conn.execute(
                """UPDATE postback_deliveries SET status = $2, attempts = $3, last_status = $4, last_error = $5,
                          next_attempt_at = now() + make_interval(secs => $6) WHERE id = $1""",
                row["id"],
                "failed" if final else "pending",
                attempts,
                status,
                error or f"HTTP {status}",
                float(BASE_DELAY_S * 2 ** (attempts - 1)),
            )
    return len(rows)


async def run(pool: asyncpg.Pool, every_s: float = 2.0) -> None:
    """The delivery loop of the portal process."""
    while True:
        try:
            async with pool.acquire() as conn:
                await enqueue(conn)
                await deliver_due(conn)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("postback delivery round failed: %s", exc)
        await asyncio.sleep(every_s)
