"""What the browser tests share: Debian's Chromium driven by Playwright, a server on loopback, and the two
checks every page gets: no sideways scroll (at 390 px too) and an axe-core run (vendored, offline)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn

CHROMIUM = os.environ.get("CLICKMINT_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
# A desktop browser's user agent: headless Chromium's own says HeadlessChrome, which the tracker counts as a bot.
DESKTOP_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
AXE = Path(__file__).parent / "vendor" / "axe.min.js"  # axe-core 4.10.3, MPL-2.0 (vendor/README.md)
PHONE, DESKTOP = 390, 1280


@contextlib.asynccontextmanager
async def serve(app: Any, port: int) -> AsyncIterator[None]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        await task


_OVERFLOW = """() => {
  const doc = document.documentElement;
  const wide = [];
  for (const el of document.querySelectorAll('body *')) {
    const r = el.getBoundingClientRect();
    if (r.right > doc.clientWidth + 1 && !el.closest('.table-wrap')) {
      wide.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className ? '.' + el.className : '')
                + ' ' + Math.round(r.right));
    }
  }
  return {overflow: doc.scrollWidth - doc.clientWidth, wide: wide.slice(0, 8)};
}"""

_AXE_RUN = """async () => {
  const result = await axe.run(document, {resultTypes: ['violations']});
  return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                      nodes: v.nodes.slice(0, 4).map(n => n.target.join(' '))}));
}"""


async def no_sideways_scroll(page: Any, label: str) -> None:
    found = await page.evaluate(_OVERFLOW)
    assert found["overflow"] <= 0, f"{label}: the page scrolls sideways by {found['overflow']} px: {found['wide']}"


async def accessible(page: Any, label: str) -> list[dict[str, Any]]:
    """axe-core on the page as it is now: no serious or critical violation (the moderate ones are returned)."""
    if not await page.evaluate("() => typeof axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))  # the context bypasses the portal's CSP for this one script
    violations = await page.evaluate(_AXE_RUN)
    bad = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"{label}: axe found {bad}"
    return violations


async def check_page(page: Any, url: str, label: str | None = None) -> None:
    """Open `url` and check it on a desktop and at phone size: it loads, no sideways scroll, axe is clean."""
    label = label or url
    await page.set_viewport_size({"width": DESKTOP, "height": 900})
    response = await page.goto(url)
    assert response is not None and response.status < 400, (label, response and response.status)
    await accessible(page, f"{label} at {DESKTOP} px")
    await page.set_viewport_size({"width": PHONE, "height": 844})
    await page.evaluate("() => new Promise(done => requestAnimationFrame(() => done()))")  # laid out again
    await no_sideways_scroll(page, f"{label} at {PHONE} px")
    await accessible(page, f"{label} at {PHONE} px")
