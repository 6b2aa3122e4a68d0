"""The `clickmint ingest` process: runs the consumer until SIGTERM or SIGINT, then stops between batches.

Beside the consumer it serves the billing metrics (`CLICKMINT_BILLING_METRICS_PORT`) and runs
retention once a day (`billing/retention.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal

from billing import loyalty_daily, retention
from billing.consumer import Ingest
from billing.derive import Deriver
from billing.metrics import BillingMetrics
from billing.settings import BillingSettings

log = logging.getLogger("clickmint.billing.runner")


def run_ingest() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = BillingSettings.from_env()

    async def main() -> None:
        ingest = Ingest(settings, derive=Deriver(settings.asn_db))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, ingest.stop)
        await ingest.connect_redis()  # a cluster client when Redis is a cluster: metrics share it
        metrics = BillingMetrics(settings, ingest.redis, ingest.stats)
        if settings.metrics_port:
            port = settings.metrics_port + settings.part - 1  # part i of n serves on the i-th port from it
            try:
                await metrics.start(port, settings.metrics_host)
            except OSError as exc:  # metrics are an aid: ingest runs without them
                log.warning("billing metrics not served on port %d: %s", port, exc)
        stop_daily = asyncio.Event()
        daily = asyncio.create_task(  # one process of several runs it
            retention.run_daily(settings, stop_daily) if settings.part == 1 else stop_daily.wait(), name="retention"
        )
        trimmer = asyncio.create_task(release_freed_memory(stop_daily), name="malloc-trim")
        loyalty = asyncio.create_task(  # points past their hold, expiry, tiers (billing/loyalty_daily.py)
            loyalty_daily.run_periodically(settings.core.database_url or "", stop_daily)
            if settings.part == 1
            else stop_daily.wait(),
            name="loyalty",
        )
        try:
            await ingest.run()
        finally:
            stop_daily.set()
            await asyncio.gather(daily, trimmer, loyalty, return_exceptions=True)
            await metrics.close()

    asyncio.run(main())
    return 0


async def release_freed_memory(stop: asyncio.Event, every_s: float = 60.0) -> None:
    """Hand memory that glibc keeps after it was freed back to the system, once a minute.

    Ingest allocates and frees a little for every transaction; glibc's heap keeps much of what was
    freed (RSS rose ~0.3 MB a minute at 310 events/s in the 30-minute soak), yet nothing is live:
    malloc_trim returned all of it (`python -m loadtests.ingest_memory`). A no-op off glibc.
    """
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
        trim(0)
