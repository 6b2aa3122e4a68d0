"""Partners' outbound postbacks: the partner's own URL called on each of its conversions, macros
filled in, signed with its secret, retried with exponential backoff, every attempt logged.

Signature: X-Clickmint-Signature = hex HMAC-SHA256(secret, "<X-Clickmint-Timestamp>.<url>").

Every URL goes through the egress policy (kernel/egress.py) when it is saved and again at each attempt.
Attempts run concurrently, outside any database transaction (a delivery is claimed by a short lease on its
row, then called, then its result written), at most PER_HOST at a time to one host and PER_PARTNER for one
partner, so a slow or hanging endpoint delays nobody else's. The partner sees only a coarse result of each
attempt (RESULTS), never an error's text or an exact status code.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import logging
import secrets
import ssl
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson

from kernel.egress import Blocked, EgressPolicy
from kernel.money import format_amount
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
MAX_PER_PARTNER = 10  # postback URLs per partner
CONCURRENCY = 64  # deliveries attempted at once by one portal process
PER_HOST = 4  # at once to one host
PER_PARTNER = 4  # at once for one partner
LEASE_S = 120  # a claimed delivery is tried again after this if its attempt never reported back
RESULTS = {
    "delivered": "delivered",
    "http_3xx": "HTTP 3xx",
    "http_4xx": "HTTP 4xx",
    "http_5xx": "HTTP 5xx",
    "timeout": "failed (timeout)",
    "refused": "failed (refused)",
    "blocked": "failed (blocked by policy)",
}


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


async def check_url(policy: EgressPolicy, url: str) -> None:
    """A postback URL must pass the egress policy when it is saved (and passes it again at each delivery)."""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await policy.check(url)
    except Blocked as refused:
        raise ApiError(400, "url_not_allowed", f"this URL is not called: {refused.reason}") from None
    except TimeoutError:
        raise ApiError(400, "url_not_allowed", "this URL is not called: its host did not resolve in time") from None


async def create(
    conn: asyncpg.Connection, partner_id: int, url: str, events: list[str], policy: EgressPolicy
) -> dict[str, Any]:
    await check_url(policy, url)
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
        """SELECT id, event_id::text AS event_id, url, status, attempts, outcome, created_at, delivered_at,
                  next_attempt_at
           FROM postback_deliveries WHERE postback_id = $1 ORDER BY id DESC LIMIT 200""",
        postback_id,
    )
    out = []
    for r in rows:
        item = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in dict(r).items()}
        item["result"] = RESULTS.get(item.pop("outcome") or "", "pending")
        out.append(item)
    return out


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
                  k.minor AS commission_minor, k.currency AS commission_currency, k.currencies
           FROM partner_postbacks p
           JOIN conversions c ON c.partner_id = p.partner_id AND c.kind = ANY(p.events) AND c.ts >= p.created_at
           JOIN offers o ON o.id = c.offer_id
           CROSS JOIN LATERAL (SELECT coalesce(sum(amount_minor), 0)::bigint AS minor, min(currency) AS currency,
                                      count(DISTINCT currency) AS currencies
                               FROM commissions WHERE event_id = c.event_id) k
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
            "commission": _commission(r),
        }
        records.append((r["postback_id"], r["event_id"], render(r["template"], values)))
    await conn.executemany(
        """INSERT INTO postback_deliveries (postback_id, event_id, url) VALUES ($1, $2, $3)
           ON CONFLICT (postback_id, event_id) DO NOTHING""",
        records,
    )
    return len(records)


def _commission(row: asyncpg.Record) -> str:
    """{commission}: the conversion's commission in its own currency (a cps line is in the sale's). Lines in
    two currencies (a hybrid's fixed part and its percentage of a sale in another currency) add up to no one
    figure: then empty."""
    if row["currencies"] > 1:
        return ""
    return format_amount(row["commission_minor"], row["commission_currency"] or row["currency"])


def _outcome(status: int) -> str:
    if 200 <= status < 300:
        return "delivered"
    if status < 400:
        return "http_3xx"  # a redirect is never followed
    return "http_4xx" if status < 500 else "http_5xx"


class Deliverer:
    """Calls due deliveries concurrently under the egress policy and the per-host and per-partner limits."""

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        concurrency: int = CONCURRENCY,
        per_host: int = PER_HOST,
        per_partner: int = PER_PARTNER,
        timeout: float = TIMEOUT_S,
    ) -> None:
        self.policy = policy
        self.concurrency = concurrency
        self.per_host = per_host
        self.per_partner = per_partner
        self.timeout = timeout
        verify: ssl.SSLContext | bool = True
        if policy.ca_file:
            verify = ssl.create_default_context(cafile=policy.ca_file)
        # No connection is reused: a pooled TLS connection made for one name must never carry another's request.
        self.client = httpx.AsyncClient(
            verify=verify,
            follow_redirects=False,
            trust_env=False,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=0),
        )
        self.in_flight: Counter[int] = Counter()  # partner id -> deliveries being attempted
        self._hosts: dict[str, asyncio.Semaphore] = {}  # host -> at most PER_HOST calls at once
        self._host_users: Counter[str] = Counter()  # host -> calls waiting for or holding its semaphore
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.aclose()

    @property
    def free(self) -> int:
        return max(0, self.concurrency - len(self._tasks))

    async def claim(self, conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
        """Take up to `limit` due deliveries by a lease on their rows (one autocommitted statement: no
        transaction stays open while they are called); at most PER_PARTNER in flight for one partner."""
        if limit <= 0:
            return []
        busy = orjson.dumps({str(k): v for k, v in self.in_flight.items() if v}).decode()
        return await conn.fetch(
            """WITH ranked AS (
                   SELECT d.id, d.next_attempt_at, p.partner_id,
                          row_number() OVER (PARTITION BY p.partner_id ORDER BY d.next_attempt_at, d.id) AS n
                   FROM postback_deliveries d JOIN partner_postbacks p ON p.id = d.postback_id
                   WHERE d.status = 'pending' AND d.next_attempt_at <= now()),
               picked AS (
                   SELECT id FROM ranked
                   WHERE n + coalesce(($2::jsonb ->> partner_id::text)::int, 0) <= $3
                   ORDER BY next_attempt_at, id LIMIT $1)
               UPDATE postback_deliveries d SET next_attempt_at = now() + make_interval(secs => $4)
               FROM picked, partner_postbacks p
               WHERE d.id = picked.id AND p.id = d.postback_id AND d.status = 'pending' AND d.next_attempt_at <= now()
               RETURNING d.id, d.url, d.attempts, p.secret, p.partner_id""",
            limit,
            busy,
            self.per_partner,
            float(LEASE_S),
        )

    async def attempt(self, url: str, secret: str) -> tuple[str, int | None]:
        """One call of a delivery's URL: (outcome, status code if one came back)."""
        try:
            async with asyncio.timeout(self.timeout):  # a name server that never answers is a timeout too
                target = await self.policy.check(url)
        except Blocked as refused:
            log.info("postback not called, blocked by the egress policy: %s", refused.reason)
            return "blocked", None
        except TimeoutError:
            return "timeout", None
        timestamp = int(time.time())
        headers = {
            "Host": target.host_header,
            "User-Agent": "Clickmint-Postback/1",
            "X-Clickmint-Timestamp": str(timestamp),
            "X-Clickmint-Signature": sign(secret, timestamp, url),
        }
        extensions = {"sni_hostname": target.hostname} if target.scheme == "https" else {}
        host = target.hostname
        semaphore = self._hosts.setdefault(host, asyncio.Semaphore(self.per_host))
        self._host_users[host] += 1
        try:
            async with semaphore, asyncio.timeout(self.timeout):
                request = self.client.build_request("GET", target.connect_url, headers=headers, extensions=extensions)
                response = await self.client.send(request, stream=True)
                await response.aclose()  # the status is all we read
        except (TimeoutError, httpx.TimeoutException):
            return "timeout", None
        except (httpx.HTTPError, OSError, ssl.SSLError, ValueError) as exc:
            log.info("postback to %s failed: %s", target.hostname, type(exc).__name__)
            return "refused", None
        finally:
            self._host_users[host] -= 1
            if not self._host_users[host]:  # nobody calls this host now: forget its semaphore
                del self._host_users[host], self._hosts[host]
        return _outcome(response.status_code), response.status_code

    async def deliver(self, row: asyncpg.Record, pool: asyncpg.Pool) -> None:
        """Attempt one claimed delivery and write its result (the loop's task for each)."""
        self.in_flight[row["partner_id"]] += 1
        try:
            outcome, status = await self.attempt(row["url"], row["secret"])
            async with pool.acquire() as conn:
                await record(conn, row, outcome, status)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("postback delivery %s not recorded (its lease runs out, it is tried again): %s", row["id"], exc)
        finally:
            self.in_flight[row["partner_id"]] -= 1

    def start(self, row: asyncpg.Record, pool: asyncpg.Pool) -> None:
        task = asyncio.create_task(self.deliver(row, pool), name=f"postback-{row['id']}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def record(conn: asyncpg.Connection, row: asyncpg.Record, outcome: str, status: int | None) -> None:
    """The result of one attempt: delivered, or pending again with backoff (failed after MAX_ATTEMPTS)."""
    attempts = row["attempts"] + 1
    if outcome == "delivered":
        await conn.execute(
            """UPDATE postback_deliveries SET status = 'delivered', attempts = $2, last_status = $3, outcome = $4,
                      last_error = NULL, delivered_at = now() WHERE id = $1""",
            row["id"],
            attempts,
            status,
            outcome,
        )
        return
    await conn.execute(
        """UPDATE postback_deliveries SET status = $2, attempts = $3, last_status = $4, outcome = $5, last_error = NULL,
                  next_attempt_at = now() + make_interval(secs => $6) WHERE id = $1""",
        row["id"],
        "failed" if attempts >= MAX_ATTEMPTS else "pending",
        attempts,
        status,
        outcome,
        float(BASE_DELAY_S * 2 ** (attempts - 1)),
    )


async def deliver_due(conn: asyncpg.Connection, policy: EgressPolicy, limit: int = 50) -> int:
    """Attempt the deliveries that are due, concurrently, and wait for all: 2xx delivers, anything else
    retries later with backoff. (The portal's loop, `run`, does the same without waiting.)"""
    deliverer = Deliverer(policy)
    try:
        rows = await deliverer.claim(conn, limit)
        outcomes = await asyncio.gather(*(deliverer.attempt(row["url"], row["secret"]) for row in rows))
        for row, (outcome, status) in zip(rows, outcomes, strict=True):
            await record(conn, row, outcome, status)
    finally:
        await deliverer.close()
    return len(rows)


async def run(pool: asyncpg.Pool, policy: EgressPolicy, every_s: float = 2.0) -> None:
    """The delivery loop of the portal process: queue, claim what there is room for, call in the background."""
    deliverer = Deliverer(policy)
    try:
        while True:
            try:
                async with pool.acquire() as conn:
                    await enqueue(conn)
                    rows = await deliverer.claim(conn, deliverer.free)
                for row in rows:
                    deliverer.start(row, pool)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("postback delivery round failed: %s", exc)
            await asyncio.sleep(every_s)
    finally:
        await deliverer.close()
