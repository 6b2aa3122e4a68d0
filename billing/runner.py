"""The `clickmint ingest` process: runs the consumer until SIGTERM or SIGINT, then stops between batches.

Beside the consumer it serves the billing metrics (`CLICKMINT_BILLING_METRICS_PORT`) and runs
retention once a day (`billing/retention.py`).
"""

from __future__ import annotations

import asyncio
import logging
import signal

from billing import retention
from billing.consumer import Ingest
from billing.derive import Deriver
from billing.metrics import BillingMetrics
from billing.settings import BillingSettings

log = logging.getLogger("clickmint.billing.runner")


def run_ingest() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = BillingSettings.from_env()

    async def main() -> None:
        ingest = Ingest(settings, derive=Deriver())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, ingest.stop)
        await ingest.connect_redis()  # a cluster client when Redis is a cluster: metrics share it
        metrics = BillingMetrics(settings, ingest.redis, ingest.stats)
        if settings.metrics_port:
            try:
                await metrics.start(settings.metrics_port)
            except OSError as exc:  # metrics are an aid: ingest runs without them
                log.warning("billing metrics not served on port %d: %s", settings.metrics_port, exc)
        stop_daily = asyncio.Event()
        daily = asyncio.create_task(retention.run_daily(settings, stop_daily), name="retention")
        try:
            await ingest.run()
        finally:
            stop_daily.set()
            await asyncio.gather(daily, return_exceptions=True)
            await metrics.close()

    asyncio.run(main())
    return 0
