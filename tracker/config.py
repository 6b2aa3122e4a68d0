"""The tracker's in-memory configuration (tracker/snapshot.py): links, offers and creatives, refreshed on change.

Loaded whole at start; a trigger on every configuration table bumps `config_version` and sends
NOTIFY cm_config, and the tracker reloads on the notification, or within a second by polling the
version when a notification is missed. Requests never read PostgreSQL. If PostgreSQL goes away,
the last snapshot keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

import asyncpg
import orjson

from kernel import caps
from kernel.crediting import Coupon
from kernel.macros import Template, normalize_hosts
from kernel.sources import parse as parse_sources
from tracker.smartlinks import compile_rules
from tracker.snapshot import EMPTY, Creative, Link, Offer, Snapshot, shard_of

log = logging.getLogger("clickmint.tracker.config")
POLL_INTERVAL_S = 1.0


async def load(conn: asyncpg.Connection, shards: int) -> Snapshot:
    """Read the whole configuration in one repeatable-read transaction."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        version = await conn.fetchval("SELECT version FROM config_version")
        offer_rows = await conn.fetch(
            """SELECT id, merchant_id, status, destination_url, fallback_url, allowed_hosts, attribution_window_s,
                      currency, caps, fee_plan, postback_security, postback_secret,
                      postback_ip_allowlist::text[] AS ips, conversion_sources, pixel_max_amount_minor, tune_token,
                      attribution_model, coupon_policy,
                      CASE WHEN jsonb_typeof(fraud_rules->'forbidden_referrers') = 'array'
                           THEN jsonb_array_length(fraud_rules->'forbidden_referrers') > 0 ELSE false END
                          AS record_referrer,
                      (starts_at IS NULL OR starts_at <= now()) AND (ends_at IS NULL OR ends_at > now()) AS running
               FROM offers"""
        )
        creative_rows = await conn.fetch("SELECT id, content_type, body, sha256 FROM creatives")
        coupon_rows = await conn.fetch(
            """SELECT c.offer_id, c.partner_id, c.code,
                      extract(epoch FROM c.valid_from)::float8 AS valid_from,
                      extract(epoch FROM c.valid_until)::float8 AS valid_until,
                      coalesce(pp.status, 'applied') = 'approved' AS usable,
                      (SELECT min(l.id) FROM links l WHERE l.partner_id = c.partner_id AND l.offer_id = c.offer_id)
                          AS link_id
               FROM coupons c JOIN offers o ON o.id = c.offer_id
               LEFT JOIN partner_programmes pp ON pp.partner_id = c.partner_id AND pp.merchant_id = o.merchant_id
               WHERE c.status = 'active'"""
        )
        link_rows = await conn.fetch(
            """SELECT l.id, l.code, l.partner_id, l.offer_id, l.creative_id, l.status, l.smart_rules,
                      coalesce(pp.status, 'applied') AS programme
               FROM links l JOIN offers o ON o.id = l.offer_id
               LEFT JOIN partner_programmes pp ON pp.partner_id = l.partner_id AND pp.merchant_id = o.merchant_id"""
        )
    coupons: dict[int, dict[str, Coupon]] = {}
    for row in coupon_rows:
        coupons.setdefault(row["offer_id"], {})[row["code"]] = Coupon(
            row["code"], row["partner_id"], row["link_id"], row["valid_from"], row["valid_until"], row["usable"]
        )
    offers: dict[int, Offer] = {}
    for row in offer_rows:
        try:
            template = Template(row["destination_url"])
            limits = caps.parse(_json(row["caps"]))
            allowed = parse_sources(_json(row["conversion_sources"]))
        except ValueError as exc:
            log.error("offer %s has an unusable destination, caps or sources and is skipped: %s", row["id"], exc)
            continue
        offers[row["id"]] = Offer(
            id=row["id"],
            merchant_id=row["merchant_id"],
            active=row["status"] == "active" and row["running"],
            destination=template,
            fallback_url=row["fallback_url"],
            allowed_hosts=normalize_hosts(row["allowed_hosts"]),
            window_s=row["attribution_window_s"],
            currency=row["currency"],
            caps=limits,
            fee_plan=_json(row["fee_plan"]),
            postback_security=row["postback_security"],
            postback_secret=row["postback_secret"],
            postback_ips=tuple(row["ips"] or ()),
            sources=allowed,
            pixel_max_minor=row["pixel_max_amount_minor"],
            tune_token=row["tune_token"],
            attribution_model=row["attribution_model"],
            coupon_policy=row["coupon_policy"],
            coupons=coupons.get(row["id"], {}),
            record_referrer=row["record_referrer"],
        )
    creatives = {
        row["id"]: Creative(
            row["id"], row["content_type"], bytes(row["body"]), b'"' + row["sha256"][:32].encode() + b'"'
        )
        for row in creative_rows
    }
    links: dict[str, Link] = {}
    for row in link_rows:
        offer = offers.get(row["offer_id"])
        if offer is None:
            continue
        link = Link(
            id=row["id"],
            code=row["code"],
            partner_id=row["partner_id"],
            offer=offer,
            creative=creatives.get(row["creative_id"]) if row["creative_id"] else None,
            active=row["status"] == "active" and offer.active and row["programme"] == "approved",
            shard=shard_of(row["id"], shards),
            ids={"partner_id": str(row["partner_id"]), "offer_id": str(offer.id), "link_id": str(row["id"])},
        )
        links[link.code] = link
    _compile_smart(links, {row["code"]: row["smart_rules"] for row in link_rows if row["smart_rules"] is not None})
    return Snapshot(version, links, {link.id: link for link in links.values()}, offers)


def _compile_smart(links: dict[str, Link], stored: dict[str, Any]) -> None:
    """Compile each smart link's rules in place; a link whose rules cannot be used is served as a plain link."""
    if not stored:
        return
    # (partner, offer) -> the partner's active link on that offer: where an offer variant sends the click
    own: dict[tuple[int, int], int] = {}
    for link in sorted(links.values(), key=lambda item: item.id):
        if link.active and link.smart is None:
            own.setdefault((link.partner_id, link.offer.id), link.id)
    offers = {lk.offer.id: lk.offer.merchant_id for lk in links.values()}
    for code, raw in stored.items():
        found = links.get(code)
        if found is None:
            continue
        link = found
        merchant, partner = link.offer.merchant_id, link.partner_id

        def target(
            offer_id: int, partner: int = partner, merchant: int = merchant, offers: dict = offers
        ) -> int | None:
            return own.get((partner, offer_id)) if offers.get(offer_id) == merchant else None

        try:
            smart = compile_rules(_json(raw), link.offer.allowed_hosts, link.ids, target)
        except (ValueError, TypeError, KeyError) as exc:
            log.error("link %s has unusable smart-link rules and is served as a plain link: %s", link.id, exc)
            continue
        links[code] = replace(link, smart=smart)


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return orjson.loads(value)
    return dict(value or {})


class ConfigCache:
    """Holds the current snapshot and keeps it fresh from PostgreSQL in the background."""

    def __init__(self, dsn: str, shards: int) -> None:
        self._dsn = dsn
        self._shards = shards
        self.snapshot = EMPTY
        self.loaded = False
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: asyncpg.Connection | None = None

    async def start(self) -> None:
        self._conn = await asyncpg.connect(self._dsn)
        await self._reload()
        await self._conn.add_listener("cm_config", self._notified)
        self._task = asyncio.create_task(self._run(), name="config-refresh")

    def _notified(self, *_: object) -> None:
        self._changed.set()

    async def _reload(self) -> None:
        assert self._conn is not None
        self.snapshot = await load(self._conn, self._shards)
        self.loaded = True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), POLL_INTERVAL_S)
            self._changed.clear()
            try:
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self._dsn)
                    await self._conn.add_listener("cm_config", self._notified)
                version = await self._conn.fetchval("SELECT version FROM config_version")
                if version != self.snapshot.version:
                    await self._reload()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("config refresh failed, serving the last snapshot: %s", exc)
                self._conn = None
                await asyncio.sleep(POLL_INTERVAL_S)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
