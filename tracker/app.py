"""Builds the tracker: a prefix dispatcher for the hot routes in front of a Starlette app for the rest.

/metrics is served on the admin address (CLICKMINT_METRICS_HOST:CLICKMINT_METRICS_PORT, loopback by default),
and on the click port only to a request bearing CLICKMINT_METRICS_TOKEN. Requests with too many or too large
headers are answered 431 before anything else (kernel/limits.py)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from kernel import limits, metrics, scrape
from kernel.preflight import PreflightError, redis_policy, refuse_evicting
from kernel.redis.scripts import SCRIPTS
from tracker import caps
from tracker.clickids import ClickIdSigner, derive_key
from tracker.config import ConfigCache
from tracker.endpoints import Hot
from tracker.geo import GeoLookup
from tracker.leases import LEASE
from tracker.metrics import LoopLag, Metrics
from tracker.postbacks import Conversions
from tracker.recorder import Recorder
from tracker.settings import TrackerSettings
from tracker.spool import Spool
from tracker.visit import from_scope

log = logging.getLogger("clickmint.tracker")
CLICK_KEY_ID = 1
PUBLISH_INTERVAL_S = 1.0  # how fresh the other workers see this one's metrics (kernel/metrics.py)


def signer_for(secret: str) -> ClickIdSigner:
    """Click ids are signed with a key derived from the service secret; key ids allow rotation."""
    return ClickIdSigner({CLICK_KEY_ID: derive_key(secret, CLICK_KEY_ID)}, CLICK_KEY_ID)


class TrackerApp:
    """The ASGI application of one tracker process."""

    def __init__(self, settings: TrackerSettings) -> None:
        core = settings.core
        if core.redis_url is None or core.database_url is None:
            raise RuntimeError(
                "the tracker needs CLICKMINT_REDIS_URL and CLICKMINT_DATABASE_URL (clickmint up sets them)"
            )
        self.settings = settings
        self.metrics = Metrics()
        self.loop_lag = LoopLag()
        self.cache = ConfigCache(core.database_url, core.shards)
        self.recorder = Recorder(
            core.redis_url,
            core.key_prefix,
            Spool(settings.spool_dir),
            settings.redis_budget_ms / 1000,
            (caps.SCRIPT, LEASE, *SCRIPTS),
            settings.burst_limit,
            settings.burst_window_s,
            core.redis_cluster,
        )
        self.geo = GeoLookup(settings.geo_db)
        self.hot = Hot(settings, self.cache, self.recorder, signer_for(core.secret_key), self.geo, self.metrics)
        self.conversions = Conversions(self.hot)
        self.cold = Starlette(
            routes=[
                Route("/postback", self.conversions.postback, methods=["GET", "POST"]),
                Route("/aff_lsr", self.conversions.tune, methods=["GET", "POST"]),
                Route("/healthz", self.healthz, methods=["GET", "HEAD"]),
                Route("/readyz", self.readyz, methods=["GET", "HEAD"]),
                Route("/metrics", self.metrics_page, methods=["GET"]),
            ],
            lifespan=self.lifespan,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        assert self.settings.core.redis_url is not None
        try:
            refuse_evicting(await asyncio.to_thread(redis_policy, self.settings.core.redis_url))
        except PreflightError as exc:
            if "maxmemory-policy" in str(exc):
                raise  # an evicting Redis could silently lose acknowledged events: refuse to start
            log.warning("starting without Redis, events go to the spool until it answers: %s", exc)
        await self.cache.start()
        await self.recorder.start()
        self.hot.leases.start()
        admin = await self._admin_listener()
        lag = asyncio.create_task(self.loop_lag.run(), name="loop-lag")
        publisher = (
            asyncio.create_task(self._publish_every_second(), name="metrics") if metrics.multiprocess() else None
        )
        gc.collect()
        gc.freeze()  # the long-lived config and modules leave the collector's view: shorter pauses
        try:
            yield
        finally:
            for task in (lag, publisher):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if admin is not None:
                admin.close()
            await self.recorder.settle()  # the last clicks' cap units are reported, then the unused given back
            await self.hot.leases.stop()
            await self.recorder.stop()
            await self.cache.stop()
            self.geo.close()

    async def _admin_listener(self) -> asyncio.Server | None:
        """The metrics on the admin address; a tracker runs without them when that port cannot be had."""
        settings = self.settings
        if not settings.metrics_port:
            return None
        try:
            return await scrape.serve(self.render_metrics, settings.metrics_host, settings.metrics_port)
        except OSError as exc:
            log.warning("metrics not served on %s:%d: %s", settings.metrics_host, settings.metrics_port, exc)
            return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if limits.too_large(scope["headers"]):
                await limits.refuse(send)
                self.metrics.refusals["headers_too_large"] += 1
                return
            path: str = scope["path"]
            kind = path[:3]
            if kind in ("/c/", "/v/", "/b/", "/a/") and scope["method"] in ("GET", "HEAD"):
                started = time.perf_counter()
                visit = from_scope(scope, self.settings.proxies)
                code = path[3:]
                if kind == "/c/":
                    outcome = await self.hot.click(visit, code, send)
                elif kind == "/a/":
                    outcome = await self.conversions.pixel(visit, code, send)
                else:
                    outcome = await self.hot.view(visit, code, send, banner=kind == "/b/")
                if outcome != "ok":
                    self.metrics.refusals[outcome] += 1
                self.metrics.observe(kind[1], outcome, time.perf_counter() - started)
                return
        await self.cold(scope, receive, send)

    async def healthz(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(self, request: Request) -> Response:
        """Ready when the configuration is loaded and events have somewhere durable to go.

        Without Redis the tracker is degraded, not unready: it still answers every request and spools its
        events, so it answers 200 with `"degraded": true` (a load balancer keeps sending it clicks; taking
        every replica out because their shared Redis is away would turn spooled clicks into lost ones).
        503 only when an event would have nowhere to go. Operators alert on `clickmint_degraded`.
        """
        redis_ok = self.recorder.redis_healthy
        spool_ok = self.recorder.spool.writable()
        checks = {"config_loaded": self.cache.loaded, "redis": redis_ok, "spool_writable": spool_ok}
        ready = self.cache.loaded and (redis_ok or spool_ok)
        body: dict[str, object] = {"ready": ready, "degraded": not redis_ok, **checks}
        if not spool_ok:
            body["spool_error"] = self.recorder.spool.error
        if not self.cache.loaded:
            body["reason"] = "configuration not loaded yet"
        elif not ready:
            body["reason"] = f"Redis is unreachable and the spool cannot be written: {self.recorder.spool.error}"
        elif not redis_ok:
            body["reason"] = "Redis is unreachable: events go to the spool and are replayed when it is back"
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics_page(self, request: Request) -> Response:
        """/metrics on the click port: only with the operator's token, else as if it did not exist."""
        token = self.settings.metrics_token
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if token is None or not hmac.compare_digest(given.encode(), token.encode()):
            return PlainTextResponse("Not Found", status_code=404)
        return PlainTextResponse(self.render_metrics(), media_type="text/plain; version=0.0.4")

    def render_metrics(self) -> str:
        """The Prometheus text of every worker's counters and gauges (kernel/metrics.py)."""
        spool = self.recorder.spool
        if spool.error is not None:
            spool.writable()  # a full spool is re-checked at every scrape, so the gauge clears when room is back
        self.publish_metrics()
        return self.metrics.render(self.loop_lag.render)

    def publish_metrics(self) -> None:
        """This worker's counters and gauges to the store every worker's scrape reads."""
        stats = self.recorder.stats
        spool = self.recorder.spool
        gauges = {
            "spool_bytes": float(self.recorder.spool.depth()),
            "redis_up": 1.0 if self.recorder.redis_healthy else 0.0,
            # 1 while Redis is away and events are spooled (not yet in the stream); /readyz says the same
            "degraded": 0.0 if self.recorder.redis_healthy else 1.0,
            "spool_writable": 1.0 if self.recorder.spool_ok else 0.0,
            "config_version": float(self.cache.snapshot.version),
            "events_redis_total": float(stats.events_redis),
            "events_spooled_total": float(stats.events_spooled),
            "events_replayed_total": float(stats.events_replayed),
            "batches_total": float(stats.batches),
            "spool_full": 1.0 if spool.full else 0.0,
            "spool_write_errors_total": float(stats.spool_errors),
            "events_lost_total": float(stats.events_lost),
            "scripts_reloaded_total": float(stats.scripts_reloaded),
            # click caps by lease (tracker/leases.py): LEASE calls outside the batches, units granted, and calls
            # whose outcome was unknown (the clicks waiting on them let through, flagged degraded)
            "cap_lease_calls_total": float(self.hot.leases.calls),
            "cap_units_granted_total": float(self.hot.leases.granted),
            "cap_lease_failures_total": float(self.hot.leases.failures),
        }
        self.metrics.publish(gauges, stats.batch_sizes)
        self.loop_lag.publish(self.metrics.store)

    async def _publish_every_second(self) -> None:
        """With several workers (PROMETHEUS_MULTIPROC_DIR), keep this worker's values fresh for the others."""
        while True:
            await asyncio.sleep(PUBLISH_INTERVAL_S)
            self.publish_metrics()


def create_app() -> TrackerApp:
    """The uvicorn factory: settings from the environment, logs as CLICKMINT_LOG_FORMAT says."""
    from kernel import logs

    logs.setup()
    return TrackerApp(TrackerSettings.from_env())
