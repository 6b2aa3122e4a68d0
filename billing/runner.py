"""The `clickmint ingest` process: runs the consumer until SIGTERM or SIGINT, then stops between batches."""

from __future__ import annotations

import asyncio
import logging
import signal

from billing.consumer import Ingest
from billing.derive import Deriver
from billing.settings import BillingSettings


def run_ingest() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = BillingSettings.from_env()

    async def main() -> None:
        ingest = Ingest(settings, derive=Deriver())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, ingest.stop)
        await ingest.run()

    asyncio.run(main())
    return 0
